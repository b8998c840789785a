"""`unet demo`: the README's main command, end to end on generated data (short budget)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from unet_core.demo import DEFAULT_ITERATIONS
from unet_core.demo.synthetic import make_nuclei_volume
from unet_core.demo.user_data import split_user_volume
from unet_core.engine.checkpoint import load_checkpoint
from unet_core.errors import DataError, UsageError


def test_synthetic_volume_is_labelled_and_separable():
    raw, labels = make_nuclei_volume(shape=(24, 64, 64), n_nuclei=10, seed=3)
    assert raw.dtype == np.uint8 and labels.dtype == np.uint16
    assert labels.max() == 10 and set(np.unique(labels)) == set(range(11))
    # nuclei are brighter than background on average, but not trivially (noise overlaps)
    assert raw[labels > 0].mean() > 2 * raw[labels == 0].mean()
    again, _ = make_nuclei_volume(shape=(24, 64, 64), n_nuclei=10, seed=3)
    assert np.array_equal(raw, again)


def _unet_script() -> list[str]:
    """The ``unet`` console script the README runs (the module when it is not installed)."""
    script = Path(sys.executable).with_name("unet")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "unet_core.cli.main"]


def _demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*_unet_script(), "demo", *args], capture_output=True, text=True, timeout=1200, cwd=cwd
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc


def _fingerprint(path: Path) -> tuple[int, int, bytes]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def test_readme_demo_default_then_a_second_run_replaces_it(tmp_path):
    """`unet demo` exactly as the README has it (no options, in the user's folder), then again.

    The default run (60 iterations) is checked once; the second run uses 1 iteration so that
    its results are recognisably its own, and must replace every result of the first.
    """
    proc = _demo(tmp_path)  # the README's command, verbatim
    out = tmp_path / "unet-demo"  # where the README says the results go
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]", "Done in"):
        assert stage in proc.stdout
    assert f"for {DEFAULT_ITERATIONS} iterations" in proc.stdout and DEFAULT_ITERATIONS == 60
    scores = json.loads((out / "metrics.json").read_text())
    assert scores["dice"] > 0.7, scores  # chance level (all foreground) is ~0.09
    assert scores["instance_f1"] > 0.4, scores
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert load_checkpoint(out / "checkpoints" / "last_checkpoint.pytorch")["num_iterations"] == 60
    assert (out / "checkpoints" / "best_checkpoint.pytorch").is_file()
    assert list((out / "checkpoints" / "logs").rglob("events.out.tfevents.*"))
    prediction = out / "predictions" / "test_predictions.h5"
    with h5py.File(prediction, "r") as f:
        assert f["predictions"].shape == (1, 48, 128, 128)
        assert f["segmentation"].shape == (48, 128, 128)
        assert f["segmentation"][:].max() > 10
    results = [out / "metrics.json", out / "demo.png", out / "config.json", prediction]
    first = {path: _fingerprint(path) for path in results}

    _demo(tmp_path, "--iterations", "1")
    for path in results:  # each result is a new file, not the first run's left in place
        assert _fingerprint(path) != first[path], path
    assert json.loads((out / "config.json").read_text())["trainer"]["max_num_iterations"] == 1
    assert load_checkpoint(out / "checkpoints" / "last_checkpoint.pytorch")["num_iterations"] == 1
    assert json.loads((out / "metrics.json").read_text()) != scores
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))
    assert (out / ".unet-demo").is_file()  # the mark that lets a re-run replace the results
    # the demo owns its run folder: the first run's checkpoints are moved aside, not deleted
    (previous,) = (out / "checkpoints" / "previous-runs").iterdir()
    assert load_checkpoint(previous / "last_checkpoint.pytorch")["num_iterations"] == 60
    assert (previous / "run.json").is_file()


def test_user_volume_split_and_errors(tmp_path):
    path = tmp_path / "vol.h5"
    raw = np.arange(50 * 8 * 8, dtype=np.uint8).reshape(50, 8, 8)
    with h5py.File(path, "w") as f:
        f["raw"], f["label"] = raw, (raw > 100).astype(np.uint16)
    parts = split_user_volume(str(path), None)
    assert [p[0].shape[0] for p in parts.values()] == [30, 10, 10]
    assert np.array_equal(np.concatenate([p[0] for p in parts.values()]), raw)
    with pytest.raises(DataError, match="does not exist"):
        split_user_volume(str(tmp_path / "missing.h5"), None)
    with h5py.File(tmp_path / "nolabel.h5", "w") as f:
        f["raw"] = raw
    with pytest.raises(DataError, match="'label'.*does not exist.*Datasets in this file: 'raw'"):
        split_user_volume(str(tmp_path / "nolabel.h5"), None)


def test_demo_never_replaces_files_it_did_not_write(tmp_path, capsys):
    """A folder holding the user's files under the demo's names, or a file as -o, is refused
    before anything is written; so is a bad --data, which leaves no folder behind."""
    from cli_support import run_here

    from unet_core.demo.run import check_output_folder

    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    user_files = {mine / "config.json": b"{}", mine / "data" / "train.h5": b"my volume"}
    for path, content in user_files.items():
        path.write_bytes(content)
    code, _, err = run_here(capsys, "demo", "-o", str(mine), "--iterations", "1")
    assert code != 0 and "Traceback" not in err
    assert f"{mine} already holds data, config.json" in err and "did not write" in err, err
    assert {p: p.read_bytes() for p in user_files} == user_files
    assert sorted(p.name for p in mine.rglob("*")) == ["config.json", "data", "train.h5"]
    afile = tmp_path / "results.h5"
    afile.write_bytes(b"mine")
    code, _, err = run_here(capsys, "demo", "-o", str(afile), "--iterations", "1")
    assert code != 0 and "is a file" in err and "Traceback" not in err
    assert afile.read_bytes() == b"mine"
    fresh = tmp_path / "fresh"
    code, _, err = run_here(
        capsys, "demo", "-o", str(fresh), "--data", str(tmp_path / "missing.h5")
    )
    assert code != 0 and "missing.h5" in err and not fresh.exists(), err
    # folders of earlier demo versions (before the mark) are still the demo's own
    old = tmp_path / "old"
    old.mkdir()
    own = {"model_path": str(old / "checkpoints" / "best_checkpoint.pytorch")}
    (old / "config.json").write_text(json.dumps(own))
    check_output_folder(old)
    (old / "config.json").write_text(json.dumps({"model_path": "elsewhere.pytorch"}))
    with pytest.raises(UsageError, match="already holds config.json"):
        check_output_folder(old)


def test_demo_readme_command_is_the_documented_one():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "pip install -c constraints.txt -e . && unet demo" in readme
    assert 'pip install -c constraints.txt -e ".[dev]" && pytest' in readme
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert 'pip install -c constraints.txt -e ".[dev]" && pytest' in ci


@pytest.mark.parametrize("iterations", [1, 7, 20, 45])
def test_demo_validates_within_any_budget(tmp_path, iterations):
    """Prediction needs the best checkpoint, which only validation writes."""
    from unet_core.config import config_from_dict
    from unet_core.demo.run import demo_config

    files = {p: tmp_path / f"{p}.h5" for p in ("train", "val", "test")}
    shape = (48, 128, 128)
    cfg = demo_config(tmp_path, files, iterations, dict.fromkeys(files, shape))
    every = cfg["trainer"]["validate_after_iters"]
    assert 1 <= every <= iterations and every <= 20
    assert cfg["lr_scheduler"]["T_max"] == max(1, iterations // every)
    config_from_dict(cfg)


@pytest.mark.parametrize(
    ("inputs", "model", "shape"),
    [
        (["nuclei2d_raw.tif", "nuclei2d_labels.tif"], "UNet2D", (1, 103, 512)),
        (["nuclei3d_train_a.h5"], "UNet3D", (20, 100, 100)),
    ],
)
def test_demo_on_the_users_real_data(sample_data, tmp_path, inputs, model, shape):
    """`unet demo --data` (and --labels for TIFF): 2D images train a UNet2D, volumes a UNet3D."""
    out = tmp_path / "demo"
    args = ["--data", str(sample_data / inputs[0]), "--iterations", "6"]
    if len(inputs) == 2:
        args += ["--labels", str(sample_data / inputs[1])]
    proc = subprocess.run(
        [sys.executable, "-m", "unet_core.cli.main", "demo", "-o", str(out), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    from unet_core.engine.device import available_device

    assert f"Training {model} on {available_device()} for 6 iterations" in proc.stdout
    scores = json.loads((out / "metrics.json").read_text())
    assert 0 <= scores["dice"] <= 1 and 0 <= scores["instance_f1"] <= 1
    with h5py.File(out / "predictions" / "test_predictions.h5", "r") as f:
        assert f["segmentation"].shape == shape
    assert (out / "demo.png").stat().st_size > 10_000
