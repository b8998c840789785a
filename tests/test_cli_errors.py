"""Bad data, checkpoints and configs as a user meets them: through the ``unet`` CLI.

Each case runs the real command line (``run_cli``, the console script's own entry, in this
process so torch is imported once) on real files and checks what the user sees: a non-zero exit,
one paragraph on stderr that names the file or config key and the way out, and no traceback.
The Python-API tests of the same errors live in test_predict_errors.py, test_train_errors.py,
test_checkpoint.py and test_data_io.py.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from predict_support import config, save_weights, tiny_unet, write_volume
from test_train_support import reference_config, tiny


def unet(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``unet ARGS`` as the console script does: (exit code, stderr)."""
    from unet_core.cli.errors import run_cli
    from unet_core.cli.main import cli

    try:
        run_cli(cli, list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def one_paragraph(code: int, err: str) -> str:
    """The error as the user reads it; fails unless it ends stderr as a single 'Error:'
    paragraph (after the one-line notes the CLI shows, e.g. 'Warning: No GPU found' or
    'precision: fp32 (...)')."""
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    assert len(starts) == 1, err
    text = "\n".join(lines[starts[0] :]).strip()
    assert "\n" not in text, err
    return text


def write_yaml(data: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def predict_setup(tmp_path: Path) -> tuple[dict, Path, Path]:
    """A tiny model's checkpoint and a real HDF5 volume: (config dict, volume, checkpoint)."""
    raw = np.random.default_rng(0).random((12, 20, 20)).astype(np.float32)
    volume = write_volume(tmp_path / "vol.h5", raw)
    model, spec = tiny_unet()
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    return config(spec, ckpt, [volume], tmp_path / "out"), volume, ckpt


def predict(capsys, tmp_path: Path, cfg: dict) -> str:
    code, err = unet(capsys, "predict", "--config", str(write_yaml(cfg, tmp_path / "p.yml")))
    return one_paragraph(code, err)


# -- prediction ----------------------------------------------------------------------------------
def test_predict_missing_model_path(capsys, tmp_path, predict_setup):
    cfg, _, _ = predict_setup
    del cfg["model_path"]
    text = predict(capsys, tmp_path, cfg)
    assert "model_path" in text and "--set model_path=" in text


def test_predict_checkpoint_of_another_model(capsys, tmp_path, predict_setup):
    cfg, _, _ = predict_setup
    other, _ = tiny_unet(f_maps=8)
    cfg["model_path"] = str(save_weights(other, tmp_path / "other.pytorch"))
    text = predict(capsys, tmp_path, cfg)
    assert "other.pytorch" in text and "f_maps" in text
    assert not (tmp_path / "out" / "vol_predictions.h5").exists()


def test_predict_truncated_checkpoint(capsys, tmp_path, predict_setup):
    cfg, _, ckpt = predict_setup
    broken = tmp_path / "broken.pytorch"
    broken.write_bytes(ckpt.read_bytes()[:200])
    cfg["model_path"] = str(broken)
    assert "broken.pytorch" in predict(capsys, tmp_path, cfg)


def test_predict_input_without_the_raw_dataset(capsys, tmp_path, predict_setup):
    cfg, _, _ = predict_setup
    noraw = tmp_path / "noraw.h5"
    with h5py.File(noraw, "w") as f:
        f["volume"] = np.zeros((12, 20, 20), np.float32)
    cfg["loaders"]["test"]["file_paths"] = [str(noraw)]
    text = predict(capsys, tmp_path, cfg)
    assert "noraw.h5" in text and "'raw'" in text and "'volume'" in text
    assert "raw_internal_path" in text


def test_predict_corrupt_hdf5_input(capsys, tmp_path, predict_setup):
    cfg, volume, _ = predict_setup
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(volume.read_bytes()[:1000])  # an HDF5 file cut short
    cfg["loaders"]["test"]["file_paths"] = [str(corrupt)]
    assert "corrupt.h5" in predict(capsys, tmp_path, cfg)


def test_predict_missing_input_file(capsys, tmp_path, predict_setup):
    cfg, _, _ = predict_setup
    cfg["loaders"]["test"]["file_paths"] = [str(tmp_path / "nowhere.h5")]
    text = predict(capsys, tmp_path, cfg)
    assert "nowhere.h5" in text and "file_paths" in text


def test_predict_patch_larger_than_the_volume(capsys, tmp_path, predict_setup):
    cfg, _, _ = predict_setup
    cfg["loaders"]["test"]["slice_builder"]["patch_shape"] = [16, 16, 16]
    text = predict(capsys, tmp_path, cfg)
    assert "patch_shape" in text and "vol.h5" in text


# -- training ------------------------------------------------------------------------------------
def test_train_missing_training_file(capsys, tmp_path):
    cfg = tiny(reference_config(tmp_path / "ck"))
    cfg["loaders"]["train"]["file_paths"] = [str(tmp_path / "missing_train.h5")]
    code, err = unet(capsys, "train", "--config", str(write_yaml(cfg, tmp_path / "t.yml")))
    text = one_paragraph(code, err)
    assert "missing_train.h5" in text and "file_paths" in text


def test_train_pre_trained_weights_of_another_model(capsys, tmp_path):
    cfg = tiny(reference_config(tmp_path / "ck"))  # UNet3D f_maps 4
    other, _ = tiny_unet(f_maps=8, num_levels=4, out_channels=1, final_sigmoid=True)
    cfg["trainer"]["pre_trained"] = str(save_weights(other, tmp_path / "other.pytorch"))
    code, err = unet(capsys, "train", "--config", str(write_yaml(cfg, tmp_path / "t.yml")))
    text = one_paragraph(code, err)
    assert "other.pytorch" in text and "f_maps" in text


# -- config validation ---------------------------------------------------------------------------
def test_bad_patch_shape_for_the_model(capsys, tmp_path):
    """A patch the model cannot take: `config validate` and `train` both stop with the key,
    the YAML line and the smallest size that works, before anything runs."""
    cfg = tiny(reference_config(tmp_path / "ck"))
    cfg["model"]["num_levels"] = 4
    cfg["loaders"]["train"]["slice_builder"]["patch_shape"] = [2, 64, 64]  # z 2 -> 1 -> 0
    path = write_yaml(cfg, tmp_path / "v.yml")
    for command in (["config", "validate"], ["train", "--config"]):
        code, err = unet(capsys, *command, str(path))
        assert code == 2 and "Traceback" not in err, err
        assert "v.yml" in err and "loaders.train.slice_builder.patch_shape (line" in err
        assert "too small for UNet3D with 4 levels" in err and "at least [8, 8, 8]" in err
    assert not (tmp_path / "ck").exists()  # training never started


def test_validate_pos_weight_that_does_not_broadcast(capsys, tmp_path):
    cfg = reference_config(tmp_path / "ck")
    cfg["loss"] = {"name": "BCEWithLogitsLoss", "pos_weight": [[[[2.0]]], [[[1.0]]]]}
    code, err = unet(capsys, "config", "validate", str(write_yaml(cfg, tmp_path / "v.yml")))
    assert code == 2 and "Traceback" not in err, err
    assert "loss.pos_weight has shape (2, 1, 1, 1)" in err and "(C, 1, 1, 1)" in err
    cfg["loss"]["pos_weight"] = [[[[2.0]]]]  # one channel: accepted
    code, err = unet(capsys, "config", "validate", str(write_yaml(cfg, tmp_path / "v.yml")))
    assert code == 0, err
