"""Shared fixtures. Area-specific fixtures live in the test modules that use them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from http_support import FileServer

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


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[FileServer]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www`` (put files there)."""
    root = tmp_path / "www"
    root.mkdir()
    server = FileServer(root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def bioimageio_core(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """bioimageio.core, run in subprocesses (see tests/bioimageio_support.py): installed
    once per checkout into pytest's cache, since pip cannot install it beside our pin."""
    from bioimageio_support import CoreRunner, install_core

    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("bioimageio-core") if cache is not None else None
    return CoreRunner(install_core(folder or tmp_path_factory.mktemp("bioimageio-core")))


@pytest.fixture(scope="session")
def exported_package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny UNet3D trained on the real nuclei volume and exported as a bioimage.io package:
    ``checkpoint``, ``package`` (zip), ``folder`` (unpacked), ``root``."""
    pytest.importorskip("bioimageio.spec")
    from export_support import export_tiny_package

    return export_tiny_package(tmp_path_factory.mktemp("package"))


@pytest.fixture(scope="module")
def cluster():
    """A real Dask LocalCluster of 2 worker processes, shared by the tests of one module."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as c:
        yield c
