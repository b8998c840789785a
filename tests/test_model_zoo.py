"""`unet models pull` / `list --remote`: packages by name from a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
import torch
import yaml
from cli_support import run_here as run_cli_here
from http_support import FileServer

pytest.importorskip("pooch")


def _package_bytes() -> bytes:
    """A small PlantSeg-style package (pytorch-3dunet architecture, state-dict weights)."""
    from unet_core import registry

    kwargs = {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_levels": 2, "num_groups": 2}
    torch.manual_seed(0)
    model = registry.create("models", {"name": "UNet3D", **kwargs})
    weights = io.BytesIO()
    torch.save(model.state_dict(), weights)
    rdf = {
        "type": "model",
        "format_version": "0.4.10",
        "name": "zoo-unet",
        "inputs": [{"name": "raw", "axes": "bczyx"}],
        "outputs": [{"name": "p", "axes": "bczyx"}],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "sha256": hashlib.sha256(weights.getvalue()).hexdigest(),
                "architecture": "pytorch3dunet.unet3d.model:UNet3D",
                "kwargs": kwargs,
            }
        },
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("rdf.yaml", yaml.safe_dump(rdf))
        z.writestr("weights.pt", weights.getvalue())
    return out.getvalue()


PACKAGE = _package_bytes()
SHA = hashlib.sha256(PACKAGE).hexdigest()


@pytest.fixture
def server(http_server: FileServer) -> FileServer:
    """The shared 127.0.0.1 server with PACKAGE at /zoo-unet.zip, and /cut.zip as a
    transfer that breaks mid-way."""
    for name in ("zoo-unet.zip", "cut.zip"):
        (http_server.folder / name).write_bytes(PACKAGE)
    http_server.cut.add("/cut.zip")
    return http_server


def _catalog(tmp_path: Path, url: str, sha256: str | None = SHA) -> Path:
    path = tmp_path / "models.yml"
    entry = {
        "url": url,
        "sha256": sha256,
        "file": "zoo-unet.zip",
        "description": "tiny",
        "licence": "CC0",
    }
    path.write_text(yaml.safe_dump({"version": 1, "models": {"zoo-unet": entry}}))
    return path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_pull_verifies_caches_and_then_works_offline(server, tmp_path, capsys):
    catalog, cache = _catalog(tmp_path, f"{server.url}/zoo-unet.zip"), tmp_path / "cache"
    args = ("models", "pull", "zoo-unet", "--catalog", str(catalog), "--cache", str(cache))
    code, out, err = run_cli_here(capsys, *args)
    assert code == 0, err
    cached = cache / "models" / "zoo-unet" / "zoo-unet.zip"
    assert "downloaded" in out and hashlib.sha256(cached.read_bytes()).hexdigest() == SHA
    server.stop()  # offline from here on
    code, out, err = run_cli_here(capsys, *args)
    assert code == 0 and "already in the cache" in out, err
    from unet_core.exchange.package_model import load_package_model

    assert type(load_package_model(cached)).__name__ == "UNet3D"
    code, out, _ = run_cli_here(
        capsys, "models", "list", "--catalog", str(catalog), "--cache", str(cache)
    )
    assert "zoo-unet" in out and "[cached]" in out
    # without the catalogue it was pulled from, the cache still shows it
    code, out, _ = run_cli_here(capsys, "models", "list", "--cache", str(cache))
    assert code == 0 and f"zoo-unet  [cached]  {cached}" in out, out


def test_list_remote_names_the_catalogue(tmp_path, capsys):
    catalog = _catalog(tmp_path, "http://127.0.0.1:9/zoo-unet.zip")
    code, out, _ = run_cli_here(
        capsys,
        "models",
        "list",
        "--remote",
        "--catalog",
        str(catalog),
        "--cache",
        str(tmp_path / "cache"),
    )
    assert code == 0 and "zoo-unet  tiny" in out and "sha256 checked" in out


def test_offline_and_not_cached_is_a_clear_error(tmp_path, capsys):
    catalog = _catalog(tmp_path, "http://127.0.0.1:9/zoo-unet.zip")  # nothing listens on 9
    code, _, err = run_cli_here(
        capsys,
        "models",
        "pull",
        "zoo-unet",
        "--catalog",
        str(catalog),
        "--cache",
        str(tmp_path / "cache"),
    )
    assert code != 0 and "Traceback" not in err
    assert "Could not download zoo-unet" in err and "nothing was written" in err
    assert not (tmp_path / "cache").exists() or _files(tmp_path / "cache") == []


def test_an_interrupted_download_leaves_no_partial_file(server, tmp_path, capsys):
    catalog, cache = _catalog(tmp_path, f"{server.url}/cut.zip"), tmp_path / "cache"
    code, _, err = run_cli_here(
        capsys, "models", "pull", "zoo-unet", "--catalog", str(catalog), "--cache", str(cache)
    )
    assert code != 0 and "Traceback" not in err and server.requests >= 1
    assert "IncompleteRead" in err  # the transfer broke, it was not refused for another reason
    assert not cache.exists() or _files(cache) == []


def test_a_wrong_sha256_keeps_nothing(server, tmp_path, capsys):
    catalog = _catalog(tmp_path, f"{server.url}/zoo-unet.zip", sha256="0" * 64)
    cache = tmp_path / "cache"
    code, _, err = run_cli_here(
        capsys, "models", "pull", "zoo-unet", "--catalog", str(catalog), "--cache", str(cache)
    )
    assert code != 0 and "does not have the sha256" in err
    assert not cache.exists() or _files(cache) == []


def test_an_unknown_name_lists_the_known_ones(tmp_path, capsys):
    catalog = _catalog(tmp_path, "http://127.0.0.1:9/zoo-unet.zip")
    code, _, err = run_cli_here(capsys, "models", "pull", "zoo-unt", "--catalog", str(catalog))
    assert code != 0 and "No model called 'zoo-unt'" in err and "Did you mean zoo-unet" in err
