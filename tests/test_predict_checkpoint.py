"""``unet predict CHECKPOINT INPUT... -o OUT``: the checkpoint's stored config is enough.

A tiny model is trained once (real ``unet train``, one iteration on the sample data); its
checkpoint then predicts through the CLI without a config, and through ``--config`` with a
config written by hand to say the same thing: both outputs must be equal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import torch
from cli_support import run_here
from test_train_support import reference_config, tiny, write_config

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(best checkpoint, training config) of a one-iteration real training run."""
    from unet_core.training.run import train

    folder = tmp_path_factory.mktemp("run")
    config = tiny(reference_config(folder / "checkpoints"), iterations=1, every=1)
    config["trainer"]["progress"] = "none"
    train(config)
    return folder / "checkpoints" / "best_checkpoint.pytorch", config


@pytest.fixture
def volume(tmp_path: Path) -> Path:
    """A small crop of a real nuclei volume (16 x 64 x 64)."""
    with h5py.File(DATA / "nuclei3d_train_b.h5", "r") as f:
        raw = f["raw"][:16, :64, :64]
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=raw)
    return path


def _read(path: Path, name: str = "predictions") -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][...]


def test_checkpoint_form_equals_config_form(
    trained: tuple[Path, dict], volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, training = trained
    code, out, err = run_here(
        capsys, "predict", str(checkpoint), str(volume), "-o", str(tmp_path / "out.h5")
    )
    assert code == 0, err
    assert (tmp_path / "out.h5").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left
    # the same prediction said in a config: the training's model, dataset keys, validation
    # transforms and its patch shape with half-patch steps
    config = {
        "model_path": str(checkpoint),
        "model": training["model"],
        "device": "cpu",
        "loaders": {
            "raw_internal_path": "raw",
            "global_normalization": True,
            "batch_size": 1,
            "num_workers": 0,
            "output_dir": str(tmp_path / "config_form"),
            "test": {
                "file_paths": [str(volume)],
                "slice_builder": {
                    "name": "SliceBuilder",
                    "patch_shape": [8, 32, 32],
                    "stride_shape": [4, 16, 16],
                    "skip_shape_check": True,
                },
                "transformer": {
                    "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]
                },
            },
        },
    }
    code, _, err = run_here(capsys, "predict", "-c", str(write_config(config, tmp_path / "c.yml")))
    assert code == 0, err
    expected = _read(tmp_path / "config_form" / "vol_predictions.h5")
    got = _read(tmp_path / "out.h5")
    assert got.shape == (1, 16, 64, 64)
    np.testing.assert_array_equal(got, expected)


def test_fast_folder_and_formats(
    trained: tuple[Path, dict], volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, _ = trained
    second = tmp_path / "sub" / "b.h5"
    second.parent.mkdir()
    second.write_bytes(volume.read_bytes())
    code, _, err = run_here(
        capsys,
        "predict",
        str(checkpoint),
        str(volume),
        str(second),
        "-o",
        str(tmp_path / "preds"),
        "--fast",
    )
    assert code == 0, err
    a = _read(tmp_path / "preds" / "vol_predictions.h5")
    b = _read(tmp_path / "preds" / "b_predictions.h5")
    np.testing.assert_array_equal(a, b)
    # the suffix picks the format; a postprocessor's labels land beside the one output
    tif = tmp_path / "one.tif"
    code, _, err = run_here(
        capsys, "predict", str(checkpoint), str(volume), "-o", str(tif), "--fast",
        "--postprocess", "ConnectedComponents", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    np.testing.assert_allclose(tifffile.imread(tif), a, atol=1e-6)
    assert tifffile.imread(tmp_path / "one_segmentation.tif").shape == (16, 64, 64)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_checkpoint_form_refusals(
    trained: tuple[Path, dict], volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, training = trained
    out = tmp_path / "out.h5"
    out.write_bytes(b"not ours")
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    code, _, err = run_here(capsys, "predict", str(checkpoint), str(volume), "-o", str(out))
    assert code != 0 and "already exists" in err and "--overwrite" in err
    assert (out.read_bytes(), out.stat().st_mtime_ns) == before
    code, _, err = run_here(
        capsys, "predict", str(checkpoint), str(volume), str(volume), "-o", str(out)
    )
    assert code != 0 and "names one hdf5 file, but there are 2 inputs" in err
    code, _, err = run_here(
        capsys, "predict", str(checkpoint), str(volume), "-o", str(volume), "--overwrite"
    )
    assert code != 0 and "is the input file itself" in err
    code, _, err = run_here(capsys, "predict", str(checkpoint))
    assert code != 0 and "needs a checkpoint and at least one input" in err
    bare = tmp_path / "bare.pytorch"
    torch.save(torch.load(checkpoint, weights_only=True)["model_state_dict"], bare)
    code, _, err = run_here(capsys, "predict", str(bare), str(volume), "-o", str(tmp_path / "x.h5"))
    assert code != 0 and "does not contain the config it was trained with" in err
    assert "--config FILE --model" in err and "Traceback" not in err
    assert not (tmp_path / "x.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_single_file_siblings_are_checked_before_any_work(
    trained: tuple[Path, dict],
    volume: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``-o OUT`` also writes ``OUT_segmentation.tif`` and ``OUT_preview.png``: an input or
    another file under those names stops the run before a single patch is predicted."""
    import unet_core.prediction.run as run

    checkpoint, _ = trained

    def no_work(*_: object, **__: object) -> None:
        raise AssertionError("predicted although an output name was taken")

    monkeypatch.setattr(run, "test_datasets", no_work)
    # an input named like the segmentation of -o: refused even with --overwrite
    source = tmp_path / "res_segmentation.tif"
    with h5py.File(volume, "r") as f:
        tifffile.imwrite(source, f["raw"][...])
    before = source.read_bytes()
    code, _, err = run_here(
        capsys, "predict", str(checkpoint), str(source), "-o", str(tmp_path / "res.tif"),
        "--postprocess", "ConnectedComponents", "--overwrite",
    )  # fmt: skip
    assert code != 0 and "would destroy that input" in err and "-o name" in err, err
    assert source.read_bytes() == before and not (tmp_path / "res.tif").exists()
    # a file of the user's under the preview's or the segmentation's name
    for flags, taken in (
        (["-o", str(tmp_path / "p.h5"), "--preview"], tmp_path / "p_preview.png"),
        (["-o", str(tmp_path / "q.tif"), "--postprocess", "ConnectedComponents"],
         tmp_path / "q_segmentation.tif"),
    ):  # fmt: skip
        taken.write_bytes(b"mine")
        code, _, err = run_here(capsys, "predict", str(checkpoint), str(volume), *flags)
        assert code != 0 and "already exists" in err and str(taken) in err, err
        assert taken.read_bytes() == b"mine" and not Path(flags[1]).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left
    # --overwrite replaces them, as asked
    monkeypatch.undo()
    code, _, err = run_here(
        capsys, "predict", str(checkpoint), str(volume), "-o", str(tmp_path / "p.h5"),
        "--preview", "--overwrite",
    )  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "p_preview.png").read_bytes().startswith(b"\x89PNG")


def test_an_input_the_model_cannot_take_is_named(
    trained: tuple[Path, dict], volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, _ = trained
    rgb = tmp_path / "rgb.h5"
    with h5py.File(volume, "r") as f, h5py.File(rgb, "w") as g:
        g["raw"] = np.stack([f["raw"][...]] * 3)  # (3, Z, Y, X) for a one-channel model
    out = tmp_path / "rgb_pred.h5"
    code, _, err = run_here(capsys, "predict", str(checkpoint), str(rgb), "-o", str(out))
    assert code != 0 and f"Predicting {rgb}: UNet3D expects input" in err, err
    assert "in_channels = 1" in err and "Traceback" not in err and not out.exists()


def test_a_run_that_fails_before_predicting_leaves_no_output_folder(
    trained: tuple[Path, dict], volume: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    checkpoint, _ = trained
    out = tmp_path / "new" / "preds"
    code, _, err = run_here(
        capsys, "predict", str(checkpoint), str(volume), "-o", f"{out}/",
        "--set", "loaders.raw_internal_path=nope",
    )  # fmt: skip
    assert code != 0 and "'nope' (loaders.raw_internal_path) does not exist" in err, err
    assert not (tmp_path / "new").exists()  # proven creatable up front, made when written


def test_non_terminal_run_prints_progress_lines(
    trained: tuple[Path, dict], volume: Path, tmp_path: Path
) -> None:
    checkpoint, _ = trained
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "unet_core.cli.main"]
    args = ["predict", str(checkpoint), str(volume), "-o", str(tmp_path / "p.h5"), "--fast"]
    run = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert any(line.startswith("predict: file 1/1 vol.h5 (") for line in lines), run.stderr
    assert any("patches/s" in line and " done: " in line for line in lines), run.stderr
    assert any(line.startswith("Predicting ") for line in lines)  # the engine's info line
    assert "\x1b[" not in run.stderr  # no terminal control codes in a log
    quiet = subprocess.run(
        [*cmd, "-q", *args[:-1], "-o", str(tmp_path / "q.h5")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert quiet.returncode == 0, quiet.stderr
    assert "predict: file" not in quiet.stderr and "Predicting " not in quiet.stderr
    assert "precision: " not in quiet.stderr and "precision: " in run.stderr
