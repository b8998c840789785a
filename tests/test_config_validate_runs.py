"""``unet config validate`` means "it will run": every message, through the CLI.

Inputs, checkpoints and output folders are checked on real files (a read-only tmpfs for the
unwritable folder); ``--no-files`` skips them; wrong-length (Z, Y, X) keys, YAML syntax errors
and the summary line are checked as the user sees them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from cli_support import run_here
from predict_support import save_weights, tiny_unet

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "configs" / "train_minimal.yml"
DATA = ROOT / "examples" / "data"


def _config(tmp_path: Path, **changes: object) -> dict:
    """The minimal training config with absolute data paths and a checkpoint_dir in tmp."""
    config = yaml.safe_load(MINIMAL.read_text())
    config["trainer"]["checkpoint_dir"] = str(tmp_path / "run")
    config["loaders"]["train"]["file_paths"] = [str(DATA / "nuclei3d_train_a.h5")]
    config["loaders"]["val"]["file_paths"] = [str(DATA / "nuclei3d_train_b.h5")]
    config.update(changes)
    return config


def _validate(capsys: pytest.CaptureFixture, tmp_path: Path, config: dict, *flags: str):
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return run_here(capsys, "config", "validate", "-c", str(path), *flags)


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_valid_config_lists_its_sections_and_creates_nothing(tmp_path, capsys) -> None:
    code, out, err = _validate(capsys, tmp_path, _config(tmp_path))
    assert code == 0, err
    assert out.strip().endswith(
        "valid (model, loss, eval_metric, optimizer, lr_scheduler, trainer, loaders (train, "
        "val); files checked)."
    )
    assert not (tmp_path / "run").exists()  # proven creatable, not created
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yml"]
    test = {"file_paths": [str(DATA / "nuclei3d_train_a.h5")]}
    predict_only = {"model": _config(tmp_path)["model"], "loaders": {"test": test}}
    code, out, err = _validate(capsys, tmp_path, predict_only)
    assert code == 0, err
    assert "valid (model, loaders (test); files checked)." in out


def test_missing_inputs_and_folder_without_volumes(tmp_path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    config = _config(tmp_path)
    config["loaders"]["train"]["file_paths"] = [str(DATA / "nuclei3d_train_a.h5"), "nope/vol.h5"]
    config["loaders"]["val"]["file_paths"] = [str(empty)]
    code, _, err = _validate(capsys, tmp_path, config)
    assert code == 2, err
    assert "2 problems found" in err
    assert "loaders.train.file_paths[1] (line" in err and "The path nope/vol.h5" in err
    assert "does not exist" in err and "its folder nope does not exist either" in err
    assert "loaders.val.file_paths[0] (line" in err and "contains no input files" in err
    assert "--no-files" in err and "Traceback" not in err
    code, out, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 0, err
    assert "schema only, files not checked" in out


def test_validation_files_that_are_training_files_are_refused_as_train_does(
    tmp_path, capsys
) -> None:
    config = _config(tmp_path)
    config["loaders"]["val"]["file_paths"] = [str(DATA / ".." / "data" / "nuclei3d_train_a.h5")]
    code, _, err = _validate(capsys, tmp_path, config)
    assert code == 2 and "loaders.val.file_paths (line" in err, err
    assert "both contain" in err and "hides overfitting" in err
    code, _, err = run_here(capsys, "train", "-c", str(tmp_path / "config.yml"))
    assert code != 0 and "hides overfitting" in err  # what `valid` promised: train agrees


def test_what_train_would_refuse_at_start_is_refused_by_validate(tmp_path, capsys) -> None:
    """A plateau scheduler against the metric's direction, and a metric that skips every
    output channel: `valid` must mean that training starts."""
    config = _config(tmp_path)
    config["lr_scheduler"] = {"name": "ReduceLROnPlateau", "mode": "min"}  # Dice: higher
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 2 and "lr_scheduler.mode (line" in err, err
    assert "'min' but the eval metric is higher-is-better" in err
    config["trainer"]["eval_score_higher_is_better"] = False  # the user's word wins
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 0, err
    config = _config(tmp_path)
    config["eval_metric"] = {"name": "MeanIoU", "skip_channels": [0]}
    config["model"]["out_channels"] = 1
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 2 and "eval_metric (line" in err and "leaves out every channel" in err, err
    config["model"]["out_channels"] = 2
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 0, err


def test_random_rotate90_on_non_square_patches_cannot_batch(tmp_path, capsys) -> None:
    """Such a config crashed on its first batch (pytorch-3dunet's own 2D confocal config
    does): validation names the transform, the shapes and the ways out."""
    config = _config(tmp_path)
    train = config["loaders"]["train"]
    train["slice_builder"].update(patch_shape=[16, 64, 128], stride_shape=[16, 64, 128])
    train["transformer"]["raw"].insert(1, {"name": "RandomRotate90"})
    train["transformer"]["label"].insert(0, {"name": "RandomRotate90"})
    config["loaders"]["batch_size"] = 4
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 2 and "1 problem found" in err, err  # raw and label: one cause, once
    assert "loaders.train.transformer.raw[1] (line" in err
    assert "a 64x128 patch becomes 128x64 in some samples and a batch of 4" in err
    config["loaders"]["batch_size"] = 1
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 0, err


def test_checkpoints_exist_and_fit_the_model(tmp_path, capsys) -> None:
    config = _config(tmp_path, model_path=str(tmp_path / "missing.pytorch"))
    config["trainer"]["pre_trained"] = str(tmp_path / "other.pytorch")
    model, spec = tiny_unet(out_channels=1, final_sigmoid=True)
    save_weights(model, tmp_path / "other.pytorch")  # f_maps 4; the config says 16
    code, _, err = _validate(capsys, tmp_path, config)
    assert code == 2, err
    assert "model_path (line" in err and "missing.pytorch' does not exist" in err
    assert "trainer.pre_trained (line" in err and "do not match the configured model" in err
    assert "model.num_levels: checkpoint 2 vs model 4" in err
    # the same weights with the model they were made for: valid
    config["model"] = {**spec, "layer_order": "gcr"}
    del config["model_path"]
    code, out, err = _validate(capsys, tmp_path, config)
    assert code == 0, err
    # a file torch cannot read safely is named, not unpickled
    (tmp_path / "bad.pytorch").write_bytes(b"not a checkpoint")
    config["model_path"] = str(tmp_path / "bad.pytorch")
    code, _, err = _validate(capsys, tmp_path, config)
    assert code == 2 and "Cannot read checkpoint" in err and "model_path (line" in err


def test_output_folders_must_be_creatable_and_writable(tmp_path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    config = _config(tmp_path)
    config["trainer"]["checkpoint_dir"] = str(blocker / "run")
    config["loaders"]["output_dir"] = str(blocker)
    code, _, err = _validate(capsys, tmp_path, config)
    assert code == 2, err
    assert "trainer.checkpoint_dir (line" in err and f"{blocker / 'run'} cannot be a folder" in err
    assert "loaders.output_dir (line" in err and f"{blocker} cannot be a folder" in err
    assert blocker.read_text() == "x"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root to mount")
def test_unwritable_output_folder_on_a_read_only_filesystem(tmp_path, capsys) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)])
    if mounted.returncode != 0:
        pytest.skip("mount -t tmpfs failed here")
    try:
        config = _config(tmp_path)
        config["trainer"]["checkpoint_dir"] = str(ro / "run")
        code, _, err = _validate(capsys, tmp_path, config)
    finally:
        subprocess.run(["umount", str(ro)], check=True)
    assert code == 2, err
    assert f"{ro / 'run'} does not exist and its parent {ro} is not writable" in err
    assert "Read-only file system" in err


def test_wrong_length_shapes_say_how_many_values(tmp_path, capsys) -> None:
    config = _config(tmp_path)
    config["loaders"]["train"]["slice_builder"]["patch_shape"] = [64, 64]
    config["loaders"]["val"]["slice_builder"]["stride_shape"] = [32, 64, 64, 1]
    config["predictor"] = {"name": "StandardPredictor", "tile_shape": [32]}
    code, _, err = _validate(capsys, tmp_path, config, "--no-files")
    assert code == 2, err
    assert "loaders.train.slice_builder.patch_shape (line" in err
    assert "needs 3 values (Z, Y, X), got 2" in err
    assert "loaders.val.slice_builder.stride_shape (line" in err
    assert "needs 3 values (Z, Y, X), got 4" in err
    assert "predictor.tile_shape (line" in err and "got 1" in err
    assert "missing required key `2`" not in err
    code, _, err = run_here(
        capsys, "config", "validate", "-c", str(tmp_path / "config.yml"), "--no-files",
        "--set", "loaders.train.slice_builder.patch_shape=[64, 64, 64]",
        "--set", "loaders.val.slice_builder.stride_shape=[32, 64, 64]",
        "--set", "predictor.tile_shape=[32, 32, 32]", "--set", "distributed.block_shape=[8]",
    )  # fmt: skip
    assert (
        code == 2
        and "distributed.block_shape (from the command line: --set or an option): needs 3 "
        "values (Z, Y, X), got 1"
        in err
    )


def test_yaml_syntax_error_points_where_the_construct_opened(tmp_path, capsys) -> None:
    path = tmp_path / "broken.yml"
    text = MINIMAL.read_text().replace(
        "      - examples/data/nuclei3d_train_a.h5\n",
        "      - [examples/data/nuclei3d_train_a.h5\n",
    )
    path.write_text(text)
    opened = _line_of(path, "- [examples/data/nuclei3d_train_a.h5")
    code, _, err = run_here(capsys, "config", "validate", "-c", str(path))
    assert code == 2, err
    flat = " ".join(err.split())
    assert f"{path}, line" in flat and "not valid YAML" in flat
    assert f"opened at line {opened}: `- [examples/data/nuclei3d_train_a.h5`" in flat
    assert f"from line {opened} on" in flat and "Traceback" not in err
    quoted = tmp_path / "quoted.yml"
    quoted.write_text('model:\n  name: "UNet3D\n  f_maps: 4\n')
    code, _, err = run_here(capsys, "config", "validate", str(quoted))
    flat = " ".join(err.split())
    assert code == 2 and 'opened at line 2: `name: "UNet3D`' in flat
