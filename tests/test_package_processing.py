"""A model package's pre/postprocessing is applied when it is model_path: every bioimage.io
step unet-core applies, against the formula written out here and against bioimageio.core's
own prediction of the same package on the same input.

The package is the tiny network exported from the real nuclei volume (tests/conftest.py),
with its rdf.yaml's steps replaced; predictions are one patch of the whole crop, which is
what bioimageio.core computes without tiling.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from export_support import crop_file, predict_crop

pytest.importorskip("bioimageio.spec")

EPS = 1e-6  # bioimage.io's default eps
SPACE = ["z", "y", "x"]
#: What the config would normalise with: clipping, so that it cannot pass for the package's
#: steps (an affine normalisation would: the network's first GroupNorm removes it).
CONFIG_TRANSFORMS = [
    {"name": "Normalize", "min_value": 0, "max_value": 30, "norm01": True},
    {"name": "ToTensor", "expand_dims": True},
]


def _variant(exported, tmp_path: Path, name: str, pre: list, post: list | None = None) -> Path:
    folder = tmp_path / name
    shutil.copytree(exported["folder"], folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    rdf["inputs"][0]["preprocessing"] = pre
    if post:
        rdf["outputs"][0]["postprocessing"] = post
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    return folder


def _raw(tmp_path: Path) -> np.ndarray:
    with h5py.File(crop_file(tmp_path / "crop")) as f:
        return f["raw"][...].astype(np.float64)


def _network(exported, x: np.ndarray) -> np.ndarray:
    """The checkpoint's network on a normalised (Z, Y, X) input, as (Z, Y, X)."""
    from unet_core.exchange.source import load_export_source

    model = load_export_source(exported["checkpoint"]).model
    with torch.no_grad():
        return model(torch.from_numpy(x[None, None].astype(np.float32))).numpy()[0, 0]


def _zmuv(r):
    return (r - r.mean()) / (r.std() + EPS)


PRE = {  # name: (steps, what they compute on the raw crop)
    "zero_mean_unit_variance": (
        [{"id": "zero_mean_unit_variance", "kwargs": {"axes": ["channel", *SPACE]}}],
        _zmuv,
    ),
    "scale_range": (
        [{"id": "scale_range", "kwargs": {"min_percentile": 5, "max_percentile": 99.5}}],
        lambda r: (r - np.percentile(r, 5)) / (np.percentile(r, 99.5) - np.percentile(r, 5) + EPS),
    ),
    "fixed_zero_mean_unit_variance+clip": (
        [
            {"id": "fixed_zero_mean_unit_variance", "kwargs": {"mean": 40.0, "std": 30.0}},
            {"id": "clip", "kwargs": {"min": -1.0, "max": 2.0}},
        ],
        lambda r: np.clip((r - 40) / (30 + EPS), -1, 2),
    ),
    "scale_linear+zero_mean_unit_variance": (
        [
            {"id": "scale_linear", "kwargs": {"gain": -0.5, "offset": 3.0}},
            {"id": "zero_mean_unit_variance", "kwargs": {}},
        ],
        lambda r: _zmuv(r * -0.5 + 3),  # statistics of what the earlier step made
    ),
}

POST = {  # name: (steps, what they compute on the network's output)
    "binarize": ([{"id": "binarize", "kwargs": {"threshold": 0.5}}], lambda y: y > 0.5),
    "scale_linear+clip": (
        [
            {"id": "scale_linear", "kwargs": {"gain": 4.0, "offset": -2.0}},
            {"id": "clip", "kwargs": {"min": -1.0, "max": 1.0}},
        ],
        lambda y: np.clip(4 * y - 2, -1, 1),
    ),
    "sigmoid": ([{"id": "sigmoid"}], lambda y: 1 / (1 + np.exp(-y))),
}


@pytest.mark.parametrize("case", sorted(PRE))
def test_input_steps_are_applied(exported_package, tmp_path, case):
    steps, formula = PRE[case]
    package = _variant(exported_package, tmp_path, "pkg", steps)
    expected = _network(exported_package, formula(_raw(tmp_path)))
    got = predict_crop(package, tmp_path, raw=CONFIG_TRANSFORMS, whole=True)[0]
    assert np.abs(got - expected).max() < 1e-5


@pytest.mark.parametrize("case", sorted(POST))
def test_output_steps_are_applied(exported_package, tmp_path, case):
    steps, formula = POST[case]
    pre = PRE["zero_mean_unit_variance"][0]
    package = _variant(exported_package, tmp_path, "pkg", pre, steps)
    expected = formula(_network(exported_package, _zmuv(_raw(tmp_path)))).astype(np.float32)
    got = predict_crop(package, tmp_path, whole=True)[0]
    if case == "binarize":  # a value within float error of the threshold may go either way
        assert np.mean(got != expected) < 1e-4 and set(np.unique(got)) <= {0.0, 1.0}
    else:  # (scale_linear's gain of 4 scales the network's float error)
        assert np.abs(got - expected).max() < 4e-5


def test_predictions_equal_bioimageio_core(exported_package, tmp_path, bioimageio_core):
    """The same package and input through bioimageio.core and through `unet predict`."""
    raw = _raw(tmp_path).astype(np.float32)
    packages = {
        "percentiles": _variant(
            exported_package,
            tmp_path,
            "percentiles",
            [*PRE["scale_range"][0], {"id": "clip", "kwargs": {"min": 0.0, "max": 1.0}}],
            POST["scale_linear+clip"][0],
        ),
        "fixed": _variant(
            exported_package,
            tmp_path,
            "fixed",
            [
                *PRE["fixed_zero_mean_unit_variance+clip"][0],
                {"id": "scale_linear", "kwargs": {"gain": 2.0, "offset": 0.5}},
            ],
            POST["binarize"][0],
        ),
        "standardised": _variant(
            exported_package, tmp_path, "standardised", PRE["zero_mean_unit_variance"][0]
        ),
    }
    for name, package in packages.items():
        theirs = bioimageio_core.predict(package, raw[None, None], tmp_path / f"core-{name}")[0]
        ours = predict_crop(package, tmp_path, whole=True)
        assert ours.shape == theirs.shape
        if name == "fixed":
            assert np.mean(ours != theirs) < 1e-4, name
        else:
            assert np.abs(ours - theirs).max() < 1e-4, name
