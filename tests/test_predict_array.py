"""unet_core.predict_array: the sliding window on any array-like, equal to `unet predict`."""

from __future__ import annotations

import ast
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from predict_support import config, read, save_weights, tiny_unet, write_volume

from unet_core import predict_array
from unet_core.prediction.run import run_prediction

ROOT = Path(__file__).resolve().parents[1]
RAW_ONLY = [{"name": "ToTensor", "expand_dims": True}]  # no normalisation: same input for both
PATCH, STRIDE, HALO = (8, 16, 16), (5, 12, 12), (2, 4, 4)


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("arrays")
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(14, 30, 37)).astype(np.float32)
    model, spec = tiny_unet(seed=4)
    ckpt = save_weights(model, tmp / "model.pytorch")
    path = write_volume(tmp / "vol.h5", raw)
    memmap = np.lib.format.open_memmap(tmp / "vol.npy", mode="w+", dtype=raw.dtype, shape=raw.shape)
    memmap[...] = raw
    memmap.flush()
    return {"tmp": tmp, "raw": raw, "model": model, "spec": spec, "ckpt": ckpt, "path": path}


def _cli_prediction(volume: dict, name: str, predictor: dict) -> np.ndarray:
    cfg = config(
        volume["spec"],
        volume["ckpt"],
        [volume["path"]],
        volume["tmp"] / name,
        patch=PATCH,
        stride=STRIDE,
        halo=HALO,
        predictor=predictor,
        raw_transforms=RAW_ONLY,
    )
    (written,) = run_prediction(cfg)
    return read(written.path)


def _inputs(volume: dict):
    """The same volume as numpy, an h5py dataset and a read-only np.memmap."""
    f = h5py.File(volume["path"], "r")
    memmap = np.load(volume["tmp"] / "vol.npy", mmap_mode="r")
    return f, {"numpy": volume["raw"], "h5py": f["raw"], "memmap": memmap}


def test_reference_mode_equals_unet_predict_on_numpy_h5py_and_memmap(volume: dict) -> None:
    expected = _cli_prediction(volume, "reference", {"name": "StandardPredictor"})
    f, inputs = _inputs(volume)
    with f:
        for kind, array in inputs.items():
            got = predict_array(volume["model"], array, patch=PATCH, stride=STRIDE, halo=HALO)
            assert got.shape == expected.shape == (2, 14, 30, 37), kind
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=kind)


def test_fast_mode_equals_unet_predict_fast_and_fills_any_out(volume: dict) -> None:
    expected = _cli_prediction(volume, "fast", {"name": "StandardPredictor", "fast": True})
    f, inputs = _inputs(volume)
    with f:
        for kind, array in inputs.items():
            got = predict_array(volume["model"], array, mode="fast")
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=kind)
        # written block by block into an array-like that is not numpy: a chunked HDF5 dataset
        with h5py.File(volume["tmp"] / "out.h5", "w") as g:
            out = g.create_dataset("p", shape=expected.shape, dtype="f4", chunks=(1, 4, 8, 8))
            assert predict_array(volume["model"], inputs["h5py"], mode="fast", out=out) is out
            np.testing.assert_allclose(out[...], expected, rtol=0, atol=1e-6)


def test_predict_array_refuses_a_wrong_out_and_a_missing_patch(volume: dict) -> None:
    from unet_core.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match="patch is required"):
        predict_array(volume["model"], volume["raw"])
    with pytest.raises(DataError, match=r"out has shape \(1, 14, 30, 37\).*\(2, 14, 30, 37\)"):
        predict_array(volume["model"], volume["raw"], patch=PATCH, out=np.zeros((1, 14, 30, 37)))


def test_2d_image_and_model_without_out_channels(volume: dict) -> None:
    """A plain (Y,X) image works, and the channel count is probed when the model has none."""

    class Doubler(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    image = volume["raw"][0]
    got = predict_array(Doubler(), image, patch=(1, 16, 16), stride=(1, 10, 10))
    np.testing.assert_allclose(got, 2 * image[None, None], atol=1e-6)


# -- predictor plugins use the public API only ---------------------------------------------------
PUBLIC_CORE = {
    "unet_core",
    "unet_core.config",
    "unet_core.contracts",
    "unet_core.dataset_api",
    "unet_core.backend_api",
    "unet_core.errors",
    "unet_core.formats",
    "unet_core.interfaces",
    "unet_core.io",
    "unet_core.prediction_api",
    "unet_core.registry",
    "unet_core.tiling",
}


def _core_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("unet_core"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("unet_core")}
    return found


@pytest.mark.parametrize(
    "package",
    sorted(
        p.name for p in (ROOT / "unet_plugins").iterdir() if p.is_dir() and p.name != "__pycache__"
    ),
)
def test_plugins_import_only_public_core_modules(package: str) -> None:
    files = sorted((ROOT / "unet_plugins" / package).glob("*.py"))
    assert files
    private = {f.name: sorted(_core_imports(f) - PUBLIC_CORE) for f in files}
    assert {k: v for k, v in private.items() if v} == {}
