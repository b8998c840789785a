"""Shared fixtures. Area-specific fixtures live in the test modules that use them."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = ROOT / "examples" / "data"


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real microscopy volumes the repository carries (examples/data): never a skip."""
    if not SAMPLE_DATA.is_dir():
        pytest.fail(f"{SAMPLE_DATA} is missing: it is part of the repository (git checkout it)")
    return SAMPLE_DATA


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tile plans and other cached measurements go to a folder of this session, never into
    the user's cache (subprocesses inherit it)."""
    import os

    before = os.environ.get("UNET_CORE_CACHE")
    os.environ["UNET_CORE_CACHE"] = str(tmp_path_factory.mktemp("unet-core-cache"))
    yield
    if before is None:
        os.environ.pop("UNET_CORE_CACHE", None)
    else:
        os.environ["UNET_CORE_CACHE"] = before


@pytest.fixture(autouse=True)
def _few_threads():
    """Two cores are shared by everything: keep torch to one thread per test."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
