"""A third-party volume format and predictor (tests/plugins/unet-format-test), pip-installed
into a fresh environment and used by `unet predict`, `unet evaluate` and `unet data check`
through their entry points only: `.npy` volumes in, `.npy` predictions out, scored against
`.npy` ground truth. No core code names the format.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from plugin_env import PluginEnv, _run, plugin_env
from predict_support import save_weights, tiny_unet

from unet_core import predict_array, registry
from unet_core.prediction.score_files import batch_of

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tests" / "plugins" / "unet-format-test"
PATCH, STRIDE, HALO = (8, 16, 16), (5, 12, 12), (2, 4, 4)


@pytest.fixture(scope="module")
def fenv(tmp_path_factory: pytest.TempPathFactory) -> PluginEnv:
    penv = plugin_env(tmp_path_factory.mktemp("format-env"), PACKAGE, "unet_format_test")
    _run([penv.python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", penv.wheel])
    return penv


@pytest.fixture(scope="module")
def data(fenv: PluginEnv) -> dict:
    tmp = fenv.tmp / "data"
    tmp.mkdir()
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(12, 24, 28)).astype(np.float32)
    np.save(tmp / "vol_raw.npy", raw)
    foreground = raw > 0.3
    np.save(tmp / "vol_label.npy", np.stack([~foreground, foreground]).astype(np.uint8))
    model, spec = tiny_unet(seed=2)
    ckpt = save_weights(model, tmp / "model.pytorch")
    return {"tmp": tmp, "raw": raw, "model": model, "spec": spec, "ckpt": ckpt}


def _config(data: dict, name: str, predictor: dict) -> Path:
    cfg = {
        "model_path": str(data["ckpt"]),
        "model": data["spec"],
        "device": "cpu",
        "eval_metric": {"name": "MeanIoU"},
        "predictor": predictor,
        "loaders": {
            "dataset": "StandardHDF5Dataset",
            "label_internal_path": "label",
            "output_dir": str(data["tmp"] / name),
            "batch_size": 1,
            "num_workers": 0,
            "test": {
                "file_paths": [str(data["tmp"] / "vol_raw.npy")],
                "slice_builder": {
                    "name": "SliceBuilder",
                    "patch_shape": list(PATCH),
                    "stride_shape": list(STRIDE),
                    "halo_shape": list(HALO),
                    "skip_shape_check": True,
                },
                "transformer": {"raw": [{"name": "ToTensor", "expand_dims": True}]},
            },
        },
    }
    path = data["tmp"] / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _unet(fenv: PluginEnv, *args: object, check: bool = True):
    return _run([fenv.python, "-m", "unet_core.cli.main", *args], check=check)


@pytest.fixture(scope="module")
def predicted(fenv: PluginEnv, data: dict) -> Path:
    """`unet predict` with the plugin's predictor: .npy in, .npy out; returns the config."""
    cfg = _config(data, "plugin", {"name": "WholeArrayPredictor"})
    _unet(fenv, "predict", "--config", cfg)
    return cfg


def test_format_and_predictor_are_listed_from_the_plugin(fenv: PluginEnv) -> None:
    listing = _unet(fenv, "plugins", "list", "--long").stdout
    assert "npy" in listing and "WholeArrayPredictor" in listing
    assert "unet-format-test" in listing


def test_unet_predict_reads_and_writes_npy_with_either_predictor(
    fenv: PluginEnv, data: dict, predicted: Path
) -> None:
    expected = predict_array(data["model"], data["raw"], patch=PATCH, stride=STRIDE, halo=HALO)
    got = np.load(data["tmp"] / "plugin" / "vol_raw_predictions.npy")
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)

    # the built-in predictors write the plugin's format too, block by block for the lazy one
    for predictor in ("StandardPredictor", "LazyPredictor"):
        cfg = _config(data, predictor, {"name": predictor, "output_format": "npy"})
        _unet(fenv, "predict", "--config", cfg)
        got = np.load(data["tmp"] / predictor / "vol_raw_predictions.npy")
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=predictor)
    assert not list((data["tmp"] / "LazyPredictor").glob("*.partial*"))


def test_unet_evaluate_scores_npy_predictions_against_npy_ground_truth(
    fenv: PluginEnv, data: dict, predicted: Path
) -> None:
    pred = np.load(data["tmp"] / "plugin" / "vol_raw_predictions.npy")
    label = np.load(data["tmp"] / "vol_label.npy")
    metric = registry.create("metrics", "MeanIoU")
    expected = float(metric(batch_of(pred), batch_of(label)))

    report = data["tmp"] / "explicit.json"
    _unet(
        fenv,
        "evaluate",
        "--prediction",
        data["tmp"] / "plugin" / "vol_raw_predictions.npy",
        "--ground-truth",
        data["tmp"] / "vol_raw.npy",
        "--gt-dataset",
        "label",
        "--metric",
        "MeanIoU",
        "--json",
        report,
    )
    (score,) = json.loads(report.read_text())["scores"]
    assert score["value"] == pytest.approx(expected, abs=1e-6)

    by_config = data["tmp"] / "config.json"
    _unet(fenv, "evaluate", "--config", predicted, "--json", by_config)
    (score,) = json.loads(by_config.read_text())["scores"]
    assert score["prediction"].endswith("vol_raw_predictions.npy")
    assert score["value"] == pytest.approx(expected, abs=1e-6)


def test_unet_data_check_reads_npy_inputs(fenv: PluginEnv, data: dict) -> None:
    cfg = _config(data, "checked", {"name": "WholeArrayPredictor"})
    out = _unet(fenv, "data", "check", "--config", cfg, "--phase", "test").stdout
    assert "vol_raw.npy" in out and "no problems found" in out
