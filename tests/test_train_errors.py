"""Bad states of a training run end in one paragraph, and good files are never damaged."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from test_train_support import DATA, reference_config, tiny

from unet_core.config import config_from_dict
from unet_core.engine.checkpoint import load_checkpoint
from unet_core.errors import CheckpointError, ConfigError, TrainingError
from unet_core.training.run import train


def _train(config: dict[str, Any], **kwargs: Any) -> Any:
    torch.set_num_threads(1)
    return train(config_from_dict(config), **kwargs)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_nan_loss_stops_with_iteration_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    good = tiny(reference_config(tmp_path / "ck"), iterations=2, every=1)
    _train(good)
    last = tmp_path / "ck" / "last_checkpoint.pytorch"
    before = _digest(last)

    # Same run continued on a volume whose intensities overflow float32 in the first conv
    blown = tmp_path / "blown.h5"
    with h5py.File(DATA / "nuclei3d_train_a.h5") as src, h5py.File(blown, "w") as dst:
        dst["raw"] = np.full((100, 100, 100), 3e38, dtype=np.float32)
        dst["label"] = src["label"][:]
    bad = tiny(reference_config(tmp_path / "ck"), iterations=6, every=1)
    bad["loaders"]["train"]["file_paths"] = [str(blown)]
    bad["loaders"]["train"]["transformer"]["raw"] = [{"name": "ToTensor", "expand_dims": True}]
    bad["loaders"]["global_normalization"] = False
    bad["loaders"]["val"]["transformer"]["raw"].insert(0, {"name": "Standardize"})
    with pytest.raises(TrainingError) as info:
        _train(bad, resume=last)
    message = str(info.value)
    assert "NaN at iteration 3" in message
    assert str(last) in message and "(2 iterations)" in message
    assert "learning_rate" in message and "Standardize" in message
    assert "\n" not in message
    assert _digest(last) == before  # the last good checkpoint is untouched
    assert load_checkpoint(last)["num_iterations"] == 2


def test_unwritable_checkpoint_dir_fails_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    config = tiny(reference_config(blocker / "checkpoints"))
    config["loaders"]["train"]["file_paths"] = [str(tmp_path / "never_read.h5")]
    with pytest.raises(CheckpointError) as info:
        train(config_from_dict(config))
    message = str(info.value)
    assert "trainer.checkpoint_dir" in message and str(blocker / "checkpoints") in message
    assert "not started" in message and "\n" not in message


def test_resume_from_another_model_is_a_checkpoint_error(tmp_path: Path) -> None:
    _train(tiny(reference_config(tmp_path / "small"), iterations=1, every=1))
    other = tiny(reference_config(tmp_path / "big"), iterations=2, every=1)
    other["model"]["f_maps"] = 8
    other["model"]["num_groups"] = 4
    with pytest.raises(CheckpointError) as info:
        _train(other, resume=tmp_path / "small" / "last_checkpoint.pytorch")
    message = str(info.value)
    assert "model.f_maps" in message and "\n" not in message
    assert f"The weights in {tmp_path / 'small' / 'last_checkpoint.pytorch'} do not" in message
    assert not (tmp_path / "big").exists()  # nothing was started


def test_resume_with_weights_only_file_points_to_pre_trained(tmp_path: Path) -> None:
    _train(tiny(reference_config(tmp_path / "ck"), iterations=1, every=1))
    weights = tmp_path / "weights.pt"
    torch.save(
        load_checkpoint(tmp_path / "ck" / "last_checkpoint.pytorch")["model_state_dict"], weights
    )
    config = tiny(reference_config(tmp_path / "ck2"), iterations=2, every=1)
    with pytest.raises(CheckpointError, match="pre_trained"):
        _train(config, resume=weights)
    config["trainer"]["pre_trained"] = str(weights)
    trainer = _train(config)  # weights only: counters start afresh
    assert trainer.iteration == 2


def test_fp16_on_cpu_is_a_config_error(tmp_path: Path) -> None:
    config = tiny(reference_config(tmp_path / "ck"))
    config["trainer"]["amp"] = "fp16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        _train(config, device="cpu")
