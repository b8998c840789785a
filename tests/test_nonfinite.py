"""Non-finite values are found, not spread (issue 13, class 6): real HDF5 files with NaN/inf
voxels through `unet data check`, `unet predict`, `unet train` and `unet evaluate`, and model
outputs that the chosen output dtype cannot hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
import yaml
from cli_support import run_here
from predict_support import Register, _TestModel, config, save_weights, tiny_unet, write_volume

from unet_core.io.volume import Source

SLICES = {
    "name": "SliceBuilder",
    "patch_shape": [8, 16, 16],
    "stride_shape": [4, 4, 4],
    "skip_shape_check": True,
}
TINY_MODEL = {
    "name": "UNet3D",
    "in_channels": 1,
    "out_channels": 1,
    "f_maps": 4,
    "num_levels": 2,
    "num_groups": 2,
}


def flat(text: str) -> str:
    return " ".join(text.split())


def noisy(shape: tuple[int, ...] = (12, 20, 20), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def blobs(shape: tuple[int, ...] = (12, 20, 20)) -> np.ndarray:
    label = np.zeros(shape, np.uint16)
    label[2:8, 3:9, 3:9], label[4:10, 11:17, 10:18] = 1, 2
    return label


# -- finding them ------------------------------------------------------------------------------
def test_scan_counts_and_locates_across_blocks(tmp_path: Path) -> None:
    from unet_core.io.finite import scan_volume

    raw = noisy((2, 8, 12, 12))
    raw[1, 7, 11, 2] = np.nan
    raw[0, 3, 0, 9] = -np.inf
    raw[1, 0, 5, 5] = np.inf
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=raw, chunks=(1, 4, 4, 4))
    with Source(str(tmp_path / "v.h5")) as src:
        volume = src.volume("raw", key="raw_internal_path")
        count, lo, hi = scan_volume(volume, max_voxels=64)  # 36 blocks per channel
    assert (count.nan, count.posinf, count.neginf) == (1, 1, 1)
    assert sorted(count.first) == [(0, 3, 0, 9), (1, 0, 5, 5), (1, 7, 11, 2)]
    finite = raw[np.isfinite(raw)]
    assert (lo, hi) == (float(finite.min()), float(finite.max()))


def _data_config(tmp_path: Path, files: list[Path], **loaders: Any) -> Path:
    section = {
        "file_paths": [str(f) for f in files],
        "slice_builder": SLICES,
        "transformer": {
            "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
            "label": [{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}],
        },
    }
    data = {
        "model": TINY_MODEL,
        "loss": {"name": "BCEDiceLoss"},
        "loaders": {"num_workers": 0, **loaders, "train": section},
    }
    path = tmp_path / "check.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_data_check_reports_nonfinite_voxels(tmp_path: Path, capsys) -> None:
    raw = noisy()
    raw[3, 4, 5], raw[6, 7, 8], raw[9, 1, 2] = np.nan, np.inf, -np.inf
    bad = write_volume(tmp_path / "bad.h5", raw, label=blobs())
    dark = write_volume(
        tmp_path / "dark.h5", np.full((12, 20, 20), np.nan, np.float32), label=blobs()
    )
    cfg = _data_config(tmp_path, [bad])
    code, out, err = run_here(capsys, "data", "check", "--config", str(cfg))
    assert code == 1 and "Traceback" not in err
    text = flat(out + err)
    assert "no problems found" not in text and "[inf, -inf]" not in text
    finite = raw[np.isfinite(raw)]
    assert f"[{finite.min():g}, {finite.max():g}], 3 non-finite" in text
    assert "3 non-finite voxels (1 NaN, 1 +inf, 1 -inf)" in text
    assert "(3, 4, 5), (6, 7, 8), (9, 1, 2)" in text and str(bad) in text
    assert "loaders.nonfinite: fill" in text

    # an explicit fill is a choice, not a problem; the table still says what was found
    code, out, err = run_here(
        capsys, "data", "check", "--config", str(cfg), "--set", "loaders.nonfinite=fill"
    )
    assert code == 0, err
    assert "3 non-finite (filled" in flat(out) and "no problems found" in out

    dark_cfg = _data_config(tmp_path, [dark])
    code, out, err = run_here(capsys, "data", "check", "--config", str(dark_cfg))
    assert code == 1 and "[no finite values]" in flat(out)
    assert "4800 non-finite voxels (4800 NaN)" in flat(out + err)


def test_fill_value_must_be_finite(tmp_path: Path, capsys) -> None:
    cfg = _data_config(tmp_path, [tmp_path / "x.h5"], nonfinite="fill", nonfinite_fill="nan")
    code, _, err = run_here(capsys, "data", "check", "--config", str(cfg))
    assert code == 2 and "nonfinite_fill" in err
    cfg = _data_config(tmp_path, [tmp_path / "x.h5"], nonfinite="zero")
    code, _, err = run_here(capsys, "data", "check", "--config", str(cfg))
    assert code == 2 and "loaders.nonfinite" in flat(err) and "'error' or 'fill'" in err


# -- prediction --------------------------------------------------------------------------------
def _predict_setup(tmp_path: Path, dataset: str, workers: int) -> tuple[Path, Path]:
    raw = noisy()
    raw[5, 6, 7] = np.nan
    path = write_volume(tmp_path / "vol.h5", raw)
    model, spec = tiny_unet(out_channels=1, final_sigmoid=True)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    cfg = config(spec, ckpt, [path], tmp_path / "out", dataset=dataset)
    cfg["loaders"]["num_workers"] = workers
    cfg_path = tmp_path / "predict.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    return cfg_path, path


@pytest.mark.parametrize(
    ("dataset", "workers"), [("StandardHDF5Dataset", 0), ("LazyHDF5Dataset", 1)]
)
def test_predict_refuses_nonfinite_input_or_fills_it(tmp_path, capsys, dataset, workers) -> None:
    cfg_path, path = _predict_setup(tmp_path, dataset, workers)
    output = tmp_path / "out" / "vol_predictions.h5"
    code, _, err = run_here(capsys, "predict", "--config", str(cfg_path))
    assert code == 1 and "Traceback" not in err and "worker" not in err
    text = flat(err)
    assert str(path) in text and "'raw'" in text
    assert "1 non-finite voxel (1 NaN), the first at (5, 6, 7)" in text
    assert "loaders.nonfinite: fill" in text
    assert not output.exists()

    code, _, err = run_here(
        capsys, "predict", "--config", str(cfg_path), "--set", "loaders.nonfinite=fill"
    )
    assert code == 0, err
    with h5py.File(output) as f:
        assert np.isfinite(f["predictions"][...]).all()


def test_fill_value_replaces_the_voxel_before_the_transforms(tmp_path: Path) -> None:
    from unet_core.config import config_from_dict
    from unet_core.engine.data import build_datasets

    raw = noisy((4, 8, 8))
    raw[1, 2, 3] = -np.inf
    path = write_volume(tmp_path / "v.h5", raw)
    _, spec = tiny_unet(out_channels=1, final_sigmoid=True)
    for dataset in ("StandardHDF5Dataset", "LazyHDF5Dataset"):
        cfg = config(
            spec,
            tmp_path / "unused.pytorch",
            [path],
            tmp_path,
            patch=(4, 8, 8),
            stride=(4, 8, 8),
            halo=(0, 0, 0),
            dataset=dataset,
            raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
        )
        cfg["loaders"].update(nonfinite="fill", nonfinite_fill=7.5)
        (ds,) = build_datasets(config_from_dict(cfg), "test")
        patch, _ = ds[0]
        expected = raw.copy()
        expected[1, 2, 3] = 7.5
        np.testing.assert_array_equal(patch[0].numpy(), expected)


class Identity(_TestModel):
    """Output = scale * input (no activation): any value range the test needs."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, :1]


def _identity_run(tmp_path: Path, raw: np.ndarray, scale: float, **predictor: Any) -> Any:
    from unet_core.prediction.run import run_prediction

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_volume(tmp_path / "vol.h5", raw)
    model = Identity()
    with torch.no_grad():
        model.scale.fill_(scale)
    ckpt = save_weights(model, tmp_path / "identity.pytorch")
    cfg = config(
        {"name": "IdentityNF"},
        ckpt,
        [path],
        tmp_path / "out",
        predictor={"name": "StandardPredictor", **predictor},
        raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
    )
    with Register(IdentityNF=Identity):
        return run_prediction(cfg)


@pytest.mark.parametrize(
    ("dtype", "scale", "inside", "outside"),
    [("float16", 1.0, 60000.0, 70000.0), ("uint8", 1.0, 1.0, 1.5)],
)
def test_narrow_output_dtype_refuses_values_it_cannot_hold(
    tmp_path, dtype, scale, inside, outside
) -> None:
    from unet_core.errors import DataError

    raw = noisy()
    raw[0, 0, 0] = inside
    written = _identity_run(tmp_path / "in", raw, scale, output_dtype=dtype)
    with h5py.File(written[0].path) as f:
        stored = f["predictions"][...]
    assert stored.dtype == np.dtype(dtype) and np.isfinite(stored.astype(np.float32)).all()

    raw[0, 0, 0] = outside
    with pytest.raises(DataError) as info:
        _identity_run(tmp_path / "out", raw, scale, output_dtype=dtype)
    message = str(info.value)
    assert f"predictor.output_dtype: {dtype}" in message and f"{outside:g}]" in message
    assert "not written" in message and "float32" in message
    assert not list((tmp_path / "out" / "out").glob("*.h5"))


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_nan_from_the_model_is_never_written(tmp_path: Path, dtype: str) -> None:
    from unet_core.errors import DataError

    with pytest.raises(DataError) as info:  # NaN weights: NaN output from a finite input
        _identity_run(tmp_path, noisy(), float("nan"), output_dtype=dtype)
    message = str(info.value)
    assert "4800 non-finite voxels (4800 NaN), the first at (0, 0, 0, 0)" in message
    assert "model_path" in message and "not written" in message
    assert not list((tmp_path / "out").glob("*.h5"))


# -- training ----------------------------------------------------------------------------------
def _train_config(tmp_path: Path, train_file: Path, val_file: Path, **extra: Any) -> Path:
    section = {
        "slice_builder": SLICES,
        "transformer": {
            "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
            "label": [{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}],
        },
    }
    data = {
        "model": TINY_MODEL,
        "loss": {"name": "BCEDiceLoss"},
        "eval_metric": {"name": "DiceCoefficient"},
        "device": "cpu",
        "manual_seed": 0,
        "trainer": {
            "checkpoint_dir": str(tmp_path / "run"),
            "max_num_epochs": 1,
            "max_num_iterations": 2,
            "validate_after_iters": 1,
            "log_after_iters": 1,
            "validate_iters": 1,
            "log_images": False,
            "progress": "none",
        },
        "loaders": {
            "num_workers": 0,
            "train": {"file_paths": [str(train_file)], **section},
            "val": {"file_paths": [str(val_file)], **section},
        },
    }
    for key, value in extra.items():
        head, _, tail = key.partition(".")
        if tail:
            data[head][tail] = value
        else:
            data[head] = value
    path = tmp_path / "train.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("global_normalization", [False, True])
def test_train_refuses_nonfinite_input(tmp_path, capsys, global_normalization) -> None:
    raw = noisy()
    raw[2, 3, 4] = np.inf
    train_file = write_volume(tmp_path / "train.h5", raw, label=blobs())
    val_file = write_volume(tmp_path / "val.h5", noisy(seed=1), label=blobs())
    cfg = _train_config(
        tmp_path, train_file, val_file, **{"loaders.global_normalization": global_normalization}
    )
    code, _, err = run_here(capsys, "train", "--config", str(cfg))
    assert code == 1 and "Traceback" not in err
    text = flat(err)
    assert str(train_file) in text and "1 non-finite voxel (1 +inf), the first at (2, 3, 4)" in text
    assert "loaders.nonfinite: fill" in text and "loss became" not in text
    assert not list((tmp_path / "run").glob("*.pytorch"))

    code, _, err = run_here(
        capsys, "train", "--config", str(cfg), "--set", "loaders.nonfinite=fill"
    )
    assert code == 0, err


def test_validation_refuses_to_rank_checkpoints_by_an_undefined_score(tmp_path, capsys) -> None:
    # adapted Rand error of a target without labelled voxels is undefined on every batch
    train_file = write_volume(tmp_path / "train.h5", noisy(), label=blobs())
    val_file = write_volume(tmp_path / "val.h5", noisy(seed=1), label=np.zeros((12, 20, 20)))
    section = {
        "slice_builder": SLICES,
        "transformer": {
            "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
            "label": [{"name": "ToTensor", "expand_dims": True}],
        },
    }
    cfg = _train_config(
        tmp_path,
        train_file,
        val_file,
        eval_metric={"name": "BoundaryAdaptedRandError"},
        **{"loaders.val": {"file_paths": [str(val_file)], **section}},
    )
    code, _, err = run_here(capsys, "train", "--config", str(cfg))
    assert code == 1 and "Traceback" not in err
    text = flat(err)
    assert "BoundaryAdaptedRandError was undefined (NaN) on every validation batch" in text
    assert "iteration 1" in text and "No checkpoint was written yet" in text
    assert not (tmp_path / "run" / "best_checkpoint.pytorch").exists()


# -- evaluation --------------------------------------------------------------------------------
def _prediction(tmp_path: Path, values: np.ndarray) -> Path:
    path = tmp_path / "vol_predictions.h5"
    with h5py.File(path, "w") as f:
        f["predictions"] = values
    return path


def test_evaluate_refuses_a_nan_score_and_writes_no_report(tmp_path, capsys) -> None:
    gt = write_volume(tmp_path / "gt.h5", noisy(), label=np.zeros((12, 20, 20), np.uint16))
    pred = _prediction(tmp_path, (noisy(seed=2)[None] > 0.5).astype(np.float32))
    args = ["evaluate", "--prediction", str(pred), "--ground-truth", str(gt)]
    report = tmp_path / "report.json"
    code, _, err = run_here(
        capsys, *args, "--metric", "BoundaryAdaptedRandError", "--json", str(report)
    )
    assert code == 1 and "Traceback" not in err
    text = flat(err)
    assert "BoundaryAdaptedRandError gave nan" in text and str(pred) in text and str(gt) in text
    assert not report.exists() and not (tmp_path / "vol_predictions_evaluation.csv").exists()

    # a defined score is written as strict JSON
    code, _, err = run_here(capsys, *args, "--metric", "MeanIoU", "--json", str(report))
    assert code == 0, err
    (row,) = json.loads(report.read_text())["scores"]
    assert row["metric"] == "MeanIoU" and 0.0 <= row["value"] <= 1.0


def test_evaluate_refuses_a_nonfinite_prediction(tmp_path, capsys) -> None:
    gt = write_volume(tmp_path / "gt.h5", noisy(), label=blobs())
    values = noisy(seed=3)[None]
    values[0, 4, 5, 6] = np.nan
    pred = _prediction(tmp_path, values)
    code, _, err = run_here(
        capsys,
        "evaluate",
        "--prediction",
        str(pred),
        "--ground-truth",
        str(gt),
        "--metric",
        "MeanIoU",
    )
    assert code == 1
    text = flat(err)
    assert str(pred) in text and "1 non-finite voxel (1 NaN), the first at (0, 4, 5, 6)" in text
    assert not (tmp_path / "vol_predictions_evaluation.json").exists()


def test_dsb_images_follow_the_same_policy(tmp_path: Path) -> None:
    import tifffile

    from unet_core.config.schema import TransformerConfig
    from unet_core.errors import DataError
    from unet_core.io.finite import NonFinitePolicy
    from unet_plugins.datasets.dsb import DSB2018Dataset

    (tmp_path / "images").mkdir()
    image = noisy((16, 16))
    image[3, 9] = np.nan
    tifffile.imwrite(tmp_path / "images" / "a.tif", image)
    transformer = TransformerConfig(raw=[{"name": "ToTensor", "expand_dims": False}])
    refusing = DSB2018Dataset(str(tmp_path), "test", transformer)
    with pytest.raises(DataError, match=r"1 non-finite voxel \(1 NaN\), the first at \(0, 3, 9\)"):
        refusing[0]
    filling = DSB2018Dataset(
        str(tmp_path), "test", transformer, nonfinite=NonFinitePolicy("fill", -1.0)
    )
    raw, _ = filling[0]
    assert raw[0, 3, 9].item() == -1.0 and torch.isfinite(raw).all()
