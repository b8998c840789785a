"""model_path by URL or bioimage.io ID: downloaded from a real HTTP server on 127.0.0.1 into
the checksummed model cache, then used offline; every failure is one paragraph and leaves
nothing in the cache.

The cache is the per-user one, moved under tmp_path with XDG_CACHE_HOME (what pooch reads).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from cli_support import run_here as run_cli_here
from export_support import crop_file

pytest.importorskip("pooch")
pytest.importorskip("bioimageio.spec")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "unet-core" / "models"


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _config(tmp_path: Path, out: str) -> Path:
    crop = crop_file(tmp_path / "data")
    cfg = {
        "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1},
        "device": "cpu",
        "loaders": {
            "output_dir": str(tmp_path / out),
            "raw_internal_path": "raw",
            "test": {
                "file_paths": [str(crop)],
                "slice_builder": {
                    "name": "SliceBuilder",
                    "patch_shape": [32, 64, 64],
                    "stride_shape": [32, 64, 64],
                },
                "transformer": {"raw": [{"name": "ToTensor", "expand_dims": True}]},
            },
        },
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(json.dumps(cfg))
    return path


def _predict(capsys, tmp_path: Path, model: str, out: str) -> tuple[int, str, np.ndarray | None]:
    code, _, err = run_cli_here(
        capsys, "predict", "--config", str(_config(tmp_path, out)), "--model", model
    )
    if code:
        return code, err, None
    [path] = (tmp_path / out).glob("*_predictions.h5")
    with h5py.File(path) as f:
        return code, err, f["predictions"][...]


def _serve_described(exported, server) -> str:
    """The unpacked package under /tiny/ and an ID map naming it; returns the rdf's sha256."""
    shutil.copytree(exported["folder"], server.folder / "tiny")
    rdf = (server.folder / "tiny" / "rdf.yaml").read_bytes()
    sha = hashlib.sha256(rdf).hexdigest()
    source = f"{server.url}/tiny/rdf.yaml"
    (server.folder / "id_map.json").write_text(
        json.dumps({"tiny-nuclei": {"source": source, "sha256": sha}})
    )
    return sha


def test_a_package_by_url_is_cached_then_used_offline(
    exported_package, http_server, cache, tmp_path, capsys
):
    shutil.copy(exported_package["package"], http_server.folder / "nuclei.zip")
    local = _predict(capsys, tmp_path, str(exported_package["package"]), "local")[2]
    sha = hashlib.sha256(exported_package["package"].read_bytes()).hexdigest()
    url = f"{http_server.url}/nuclei.zip#sha256={sha}"
    code, err, first = _predict(capsys, tmp_path, url, "first")
    assert code == 0, err
    assert http_server.requests == 1 and [p.split("/")[-1] for p in _files(cache)] == ["nuclei.zip"]
    http_server.stop()  # offline from here on
    code, err, again = _predict(capsys, tmp_path, url, "again")
    assert code == 0, err
    assert local is not None and np.array_equal(first, local) and np.array_equal(again, local)


def test_a_bioimageio_id_resolves_through_the_id_map(
    exported_package, http_server, cache, tmp_path, capsys, monkeypatch
):
    _serve_described(exported_package, http_server)
    monkeypatch.setenv("UNET_BIOIMAGEIO_ID_MAP", f"{http_server.url}/id_map.json")
    local = _predict(capsys, tmp_path, str(exported_package["package"]), "local")[2]
    code, err, first = _predict(capsys, tmp_path, "bioimageio:tiny-nuclei", "first")
    assert code == 0, err
    rdf = yaml.safe_load((exported_package["folder"] / "rdf.yaml").read_text())
    weights = sorted(e["source"] for e in rdf["weights"].values())
    assert _files(cache / "bioimageio" / "tiny-nuclei") == sorted(["rdf.yaml", *weights])
    http_server.stop()
    code, err, again = _predict(capsys, tmp_path, "bioimageio:tiny-nuclei", "again")
    assert code == 0, err
    assert np.array_equal(first, local) and np.array_equal(again, local)


def test_offline_and_not_cached_is_one_paragraph(cache, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UNET_BIOIMAGEIO_ID_MAP", "http://127.0.0.1:9/id_map.json")  # closed
    for model in ("bioimageio:tiny-nuclei", "http://127.0.0.1:9/nuclei.zip"):
        code, err, _ = _predict(capsys, tmp_path, model, "out")
        assert code != 0 and "Traceback" not in err
        assert "is not in the model cache" in err and "could not be downloaded" in err
        assert "connection refused" in err
    assert not cache.exists() or _files(cache) == []
    assert not (tmp_path / "out").exists()


def test_an_interrupted_weights_download_leaves_nothing(
    exported_package, http_server, cache, tmp_path, capsys, monkeypatch
):
    _serve_described(exported_package, http_server)
    http_server.cut.add("/tiny/weights.pt")
    monkeypatch.setenv("UNET_BIOIMAGEIO_ID_MAP", f"{http_server.url}/id_map.json")
    code, err, _ = _predict(capsys, tmp_path, "bioimageio:tiny-nuclei", "out")
    assert code != 0 and "Traceback" not in err and "IncompleteRead" in err
    assert "/tiny/weights.pt" in http_server.paths
    assert not cache.exists() or _files(cache) == []


def test_a_changed_description_is_refused(
    exported_package, http_server, cache, tmp_path, capsys, monkeypatch
):
    _serve_described(exported_package, http_server)
    with open(http_server.folder / "tiny" / "rdf.yaml", "a") as f:
        f.write("\n# changed after the ID map was written\n")
    monkeypatch.setenv("UNET_BIOIMAGEIO_ID_MAP", f"{http_server.url}/id_map.json")
    code, err, _ = _predict(capsys, tmp_path, "bioimageio:tiny-nuclei", "out")
    assert code != 0 and "does not have the sha256" in err and "Traceback" not in err
    assert not cache.exists() or _files(cache) == []


def test_an_unknown_id_names_the_close_ones(
    exported_package, http_server, cache, tmp_path, capsys, monkeypatch
):
    _serve_described(exported_package, http_server)
    monkeypatch.setenv("UNET_BIOIMAGEIO_ID_MAP", f"{http_server.url}/id_map.json")
    code, err, _ = _predict(capsys, tmp_path, "bioimageio:tiny-nucleus", "out")
    assert code != 0 and "Traceback" not in err
    assert "bioimageio:tiny-nucleus is not in the bioimage.io ID map" in err
    assert "Did you mean tiny-nuclei?" in err
