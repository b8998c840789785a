"""``unet_core.train`` / ``unet_core.predict``: typed results and the engine's options."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import unet_core
from unet_core.errors import CheckpointError
from unet_core.results import PredictedFile, PredictResult, TrainResult

SLICES = {"patch_shape": [4, 16, 16], "stride_shape": [4, 16, 16], "skip_shape_check": True}
PLAIN = [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]


def _volume(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["raw"] = rng.random((4, 16, 16), dtype=np.float32)
        f["label"] = (rng.random((4, 16, 16)) > 0.5).astype(np.uint8)
    return str(path)


def _config(tmp_path: Path) -> Path:
    phase = {
        "slice_builder": {"name": "SliceBuilder", **SLICES},
        "transformer": {"raw": PLAIN, "label": [{"name": "ToTensor", "expand_dims": True}]},
    }
    config = {
        "model": {
            "name": "UNet3D",
            "in_channels": 1,
            "out_channels": 1,
            "f_maps": 4,
            "num_levels": 2,
            "layer_order": "cr",
        },
        "loss": {"name": "BCEWithLogitsLoss"},
        "eval_metric": {"name": "DiceCoefficient"},
        "device": "cpu",
        "manual_seed": 0,
        "trainer": {
            "checkpoint_dir": str(tmp_path / "run"),
            "max_num_epochs": 5,
            "max_num_iterations": 2,
            "validate_after_iters": 1,
            "progress": "none",
            "log_images": False,
        },
        "loaders": {
            "num_workers": 0,
            "output_dir": str(tmp_path / "out"),
            "train": {"file_paths": [_volume(tmp_path / "a.h5", 0)], **phase},
            "val": {"file_paths": [_volume(tmp_path / "b.h5", 1)], **phase},
            "test": {
                "file_paths": [str(tmp_path / "b.h5")],
                "transformer": {"raw": PLAIN},
                "slice_builder": {"name": "SliceBuilder", **SLICES},
            },
        },
    }
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _fingerprint(path: Path) -> tuple[bytes, int, int, int]:
    st = path.stat()
    return path.read_bytes(), st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def test_train_returns_a_typed_result_and_refuses_another_runs_folder(tmp_path):
    path = _config(tmp_path)
    result = unet_core.train(path, device="cpu")
    assert isinstance(result, TrainResult)
    assert result.iterations == 2 and result.epochs >= 0
    assert result.checkpoint_dir == tmp_path / "run"
    assert result.last_checkpoint == tmp_path / "run" / "last_checkpoint.pytorch"
    assert result.last_checkpoint.is_file()
    assert result.best_checkpoint is not None and result.best_checkpoint.is_file()
    assert result.best_score is not None and 0.0 <= result.best_score <= 1.0
    assert result.higher_is_better is True

    before = _fingerprint(result.last_checkpoint)
    with pytest.raises(CheckpointError, match="--overwrite") as err:
        unet_core.train(path)
    assert "--resume" in str(err.value)
    assert _fingerprint(result.last_checkpoint) == before  # nothing of that run was touched

    again = unet_core.train(path, overwrite=True)
    assert again.iterations == 2
    resumed = unet_core.train(
        yaml.safe_load(path.read_text())
        | {"trainer": {**yaml.safe_load(path.read_text())["trainer"], "max_num_iterations": 3}},
        resume=again.last_checkpoint,
    )
    assert resumed.iterations == 3  # resume is passed through to the engine

    predicted = unet_core.predict(path, model_path=result.best_checkpoint, device="cpu")
    assert isinstance(predicted, PredictResult)
    (item,) = predicted.files
    assert isinstance(item, PredictedFile)
    assert item.path == tmp_path / "out" / "b_predictions.h5"
    assert item.source == tmp_path / "b.h5" and item.datasets == ("predictions",)
    assert predicted.paths == [item.path]
    with h5py.File(item.path, "r") as f:
        assert f["predictions"].shape == (1, 4, 16, 16)

    first = _fingerprint(item.path)
    with pytest.raises(unet_core.UserError):
        unet_core.predict(path, model_path=os.fspath(result.best_checkpoint))
    assert _fingerprint(item.path) == first
    assert unet_core.predict(path, model_path=result.best_checkpoint, overwrite=True).paths == [
        item.path
    ]
