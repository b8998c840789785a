"""Prediction never destroys data (issue 13, classes 2, 4, 5): shared outputs are refused up
front, temporary files are never inputs and never outlive a signal, a full disk is a clear error.

The signal and full-disk tests run `unet predict` as a real subprocess (a crash would show as
rc 139), the full-disk ones on a real 2 MB tmpfs (root only; skipped otherwise).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from cli_support import run_here
from predict_support import config, read, save_weights, tiny_unet, write_volume

UNET = [sys.executable, "-m", "unet_core.cli.main"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}


def _digest(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_ino


def _volume(path: Path, shape=(12, 20, 20), seed=0) -> Path:
    raw = np.random.default_rng(seed).random(shape).astype(np.float32)
    return write_volume(path, raw)


def _config(tmp_path: Path, files, out_dir, **kw) -> Path:
    model, spec = tiny_unet(out_channels=kw.pop("out_channels", 1), final_sigmoid=True)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    cfg = config(spec, ckpt, list(files), out_dir, **kw)
    if out_dir is None:  # outputs next to the inputs
        del cfg["loaders"]["output_dir"]
    path = tmp_path / "predict.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _temporaries(folder: Path) -> list[str]:
    """Hidden files: unfinished outputs and scratch files (whatever their naming)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- class 2: two inputs never map to one output ---------------------------------------------------
@pytest.mark.parametrize("layout", ["two_folders", "two_extensions"])
def test_inputs_sharing_an_output_are_refused_before_any_work(tmp_path, capsys, layout):
    if layout == "two_folders":
        (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
        first, second = (
            _volume(tmp_path / "a" / "vol.h5"),
            _volume(tmp_path / "b" / "vol.h5", seed=1),
        )
        cfg = _config(tmp_path, [tmp_path / "a", tmp_path / "b"], tmp_path / "out")
        out_dir = tmp_path / "out"
    else:
        (tmp_path / "data").mkdir()
        first = _volume(tmp_path / "data" / "vol.h5")
        second = _volume(tmp_path / "data" / "vol.hdf5", seed=1)
        cfg = _config(tmp_path, [tmp_path / "data"], None)
        out_dir = tmp_path / "data"
    code, _, err = run_here(capsys, "predict", "--config", str(cfg), "--overwrite")
    assert code == 2, err
    assert str(first) in err and str(second) in err and "vol_predictions.h5" in err
    assert "Traceback" not in err
    assert not (out_dir / "vol_predictions.h5").exists()  # refused before any work


def test_an_existing_output_stops_the_run_before_any_work(tmp_path, capsys):
    first, second = _volume(tmp_path / "a.h5"), _volume(tmp_path / "b.h5", seed=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_predictions_preview.png").write_bytes(b"my picture")
    cfg = _config(tmp_path, [first, second], out)
    code, _, err = run_here(capsys, "predict", "--config", str(cfg), "--preview")
    assert code == 1 and "b_predictions_preview.png" in err and "--overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["b_predictions_preview.png"]


def test_an_output_that_is_an_input_is_refused(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    _volume(folder / "vol.h5")
    victim = _volume(folder / "vol_predictions.h5", seed=3)  # a user's volume, same naming
    before = _digest(victim)
    cfg = _config(tmp_path, [folder], None)
    code, _, err = run_here(capsys, "predict", "--config", str(cfg), "--overwrite")
    assert code == 2 and "itself an input" in err and str(victim) in err
    assert _digest(victim) == before


def test_a_folder_predicted_into_itself_skips_its_earlier_predictions(tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    _volume(folder / "vol.h5")
    cfg = _config(tmp_path, [folder], None)
    assert run_here(capsys, "predict", "--config", str(cfg))[0] == 0
    with pytest.warns(UserWarning, match="Skipped 1 earlier prediction"):
        code, _, err = run_here(capsys, "predict", "--config", str(cfg), "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["vol.h5", "vol_predictions.h5"]


def test_prediction_records_its_input(tmp_path, capsys):
    import h5py

    source = _volume(tmp_path / "vol.h5")
    cfg = _config(tmp_path, [source], tmp_path / "out")
    assert run_here(capsys, "predict", "--config", str(cfg))[0] == 0
    with h5py.File(tmp_path / "out" / "vol_predictions.h5", "r") as f:
        assert f["predictions"].attrs["unet_source"] == os.path.realpath(source)


def test_evaluate_refuses_a_prediction_of_another_input(tmp_path, capsys):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    label = np.zeros((12, 20, 20), np.uint16)
    other = write_volume(tmp_path / "a" / "vol.h5", np.zeros((12, 20, 20), np.float32), label=label)
    mine = write_volume(tmp_path / "b" / "vol.h5", np.ones((12, 20, 20), np.float32), label=label)
    cfg = _config(tmp_path, [other], tmp_path / "out", eval_metric={"name": "MeanIoU"})
    assert run_here(capsys, "predict", "--config", str(cfg))[0] == 0
    data = yaml.safe_load(cfg.read_text())
    data["loaders"]["test"]["file_paths"] = [str(mine)]  # same output name, other input
    cfg.write_text(yaml.safe_dump(data))
    code, _, err = run_here(capsys, "evaluate", "--config", str(cfg))
    assert code == 1 and str(other) in err and str(mine) in err, err
    assert not (tmp_path / "out" / "evaluation.json").exists()


# -- class 4: temporary files are never inputs; signals leave nothing behind ----------------------
def test_folder_expansion_skips_hidden_and_unfinished_files(tmp_path):
    from unet_core.io.paths import expand_file_paths

    real = _volume(tmp_path / "vol.h5")
    for name in (".vol~unet-partial~host~1~abc.h5", ".vol.k2j3.partial.h5", ".hidden.h5"):
        (tmp_path / name).write_bytes(b"not hdf5")
    with pytest.warns(UserWarning, match="Ignored 3 hidden or unfinished"):
        assert expand_file_paths([tmp_path]) == [str(real)]
    # a file the user names explicitly is taken as given
    assert expand_file_paths([tmp_path / ".hidden.h5"]) == [str(tmp_path / ".hidden.h5")]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_a_dead_run_are_removed_with_a_note(tmp_path, capsys):
    from unet_core.io.scratch import _host

    source = _volume(tmp_path / "vol.h5")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".vol_predictions~unet-partial~{_host()}~{_dead_pid()}~x1.h5"
    live = out / f".other~unet-scratch~{_host()}~{os.getpid()}~x2.h5"  # a running process's
    foreign = out / f".vol_predictions~unet-partial~elsewhere~{_dead_pid()}~x3.h5"
    users = out / ".notes.h5"
    for f in (stale, live, foreign, users):
        f.write_bytes(b"x")
    cfg = _config(tmp_path, [source], out)
    with pytest.warns(UserWarning, match="Removed 1 unfinished file") as notes:
        code, _, err = run_here(capsys, "predict", "--config", str(cfg))
    assert code == 0, err
    assert stale.name in str(notes[0].message)
    assert not stale.exists() and live.exists() and foreign.exists() and users.exists()


def _start_lazy(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`unet predict` with LazyPredictor on a ~4 MB volume, outputs next to the input."""
    folder = tmp_path / "data"
    folder.mkdir()
    _volume(folder / "vol.h5", shape=(48, 96, 96))
    cfg = _config(
        tmp_path,
        [folder],
        None,
        patch=(16, 32, 32),
        stride=(12, 24, 24),
        halo=(2, 4, 4),
        dataset="LazyHDF5Dataset",
        predictor={
            "name": "LazyPredictor",
            "chunks": [8, 16, 16],
            "max_block_memory_mb": 0.05,  # spill: a scratch file exists while predicting
        },
        postprocessor={"name": "ConnectedComponents", "threshold": 0.5},
    )
    proc = subprocess.Popen(
        [*UNET, "predict", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    return proc, folder, cfg


def _wait_for(folder: Path, marker: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until a hidden file with ``marker`` in its name exists (the kill lands mid-work)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(marker in p.name for p in folder.iterdir() if p.name.startswith(".")):
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before {marker} appeared: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {marker} file in {folder}")


def _interrupted(
    tmp_path: Path, marker: str, sig: signal.Signals
) -> tuple[subprocess.Popen, Path, Path, str]:
    """A run sent ``sig`` once a hidden ``marker`` file exists, and its stderr. On a loaded
    machine the poll can see the file so late that the run has finished before the signal
    lands (exit 0, nothing left to check): then a fresh run is tried, up to three."""
    for attempt in range(3):
        base = tmp_path / f"try{attempt}"
        base.mkdir()
        proc, folder, cfg = _start_lazy(base)
        _wait_for(folder, marker, proc)
        leftovers = _temporaries(folder)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        if proc.returncode != 0:
            assert leftovers, f"no {marker} file when the signal was sent"
            return proc, folder, cfg, err
    raise AssertionError(f"three runs finished before {sig.name} reached them")


def test_sigterm_stops_prediction_and_leaves_no_temporary_file(tmp_path):
    # the signal lands while the spilled-blocks scratch file exists
    proc, folder, _, err = _interrupted(tmp_path, "blocks", signal.SIGTERM)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped on SIGTERM" in err and "Traceback" not in err
    assert not (folder / "vol_predictions.h5").exists()
    assert _temporaries(folder) == []


def test_after_sigkill_the_next_folder_run_ignores_and_cleans_the_leftovers(tmp_path):
    proc, folder, cfg, _ = _interrupted(tmp_path, "partial", signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert any("partial" in n for n in _temporaries(folder))
    fast = ["--set", "predictor.max_block_memory_mb=256"]  # no spilling: the rerun is quick
    again = subprocess.run(
        [*UNET, "predict", "--config", str(cfg), *fast], capture_output=True, text=True, env=ENV
    )
    assert again.returncode == 0, again.stderr
    assert "Removed" in again.stderr and "unfinished file" in again.stderr
    assert _temporaries(folder) == []
    assert read(folder / "vol_predictions.h5").shape == (1, 48, 96, 96)


# -- class 5: a full disk is a clear error; renames are durable ----------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MB tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.parametrize(
    "predictor,compression,expected",
    [
        ("StandardPredictor", "none", "Not enough free space"),
        ("StandardPredictor", "gzip", "No space left on device"),
        ("LazyPredictor", "gzip", "No space left on device"),
    ],
)
def test_full_disk_is_one_paragraph_and_keeps_earlier_outputs(
    tmp_path, tiny_disk, predictor, compression, expected
):
    earlier = _volume(tiny_disk / "earlier_predictions.h5", shape=(8, 32, 32))
    before = _digest(earlier)
    source = _volume(tmp_path / "vol.h5", shape=(40, 96, 96))  # ~3 MB of float32 output
    cfg = _config(
        tmp_path,
        [source],
        tiny_disk,
        patch=(40, 96, 96),  # one patch: the test is about writing, not predicting
        stride=(40, 96, 96),
        halo=(0, 0, 0),
        predictor={"name": predictor, "compression": compression},
        dataset="LazyHDF5Dataset" if predictor == "LazyPredictor" else "StandardHDF5Dataset",
        out_channels=2,
    )
    out = subprocess.run(
        [*UNET, "predict", "--config", str(cfg)], capture_output=True, text=True, env=ENV
    )
    assert out.returncode == 1, (out.returncode, out.stderr)  # not 139 (segfault)
    assert expected in out.stderr and "vol_predictions.h5" in out.stderr
    assert "MB" in out.stderr and "Traceback" not in out.stderr
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["earlier_predictions.h5"]
    assert _digest(earlier) == before


def test_finished_outputs_are_renamed_durably(tmp_path, monkeypatch):
    from unet_core.prediction.output import atomic_output

    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    target = tmp_path / "vol_predictions.h5"
    with atomic_output(target, overwrite=False) as tmp:
        tmp.write_bytes(b"data")
    assert target.read_bytes() == b"data"
    assert str(tmp_path) in synced  # the folder entry, after the rename
    assert any(Path(s).parent == tmp_path and s != str(tmp_path) for s in synced)  # the file


BLOCKWISE_UNDER_SIGTERM = """
import os, signal, sys
import numpy as np
from unet_core.prediction.stop import PredictionInterrupted, stop_on_signals
from unet_plugins.postprocessors.blockwise import connected_components_blockwise

folder = sys.argv[1]
calls = []

def foreground(index):
    calls.append(index)
    if len(calls) == 2:  # mid-way through pass 1, with the scratch file open
        os.kill(os.getpid(), signal.SIGTERM)
    return np.ones([s.stop - s.start for s in index], bool)

try:
    with stop_on_signals():
        connected_components_blockwise(
            foreground, (8, 16, 16), (4, 8, 8), lambda n: lambda i, v: None, scratch_dir=folder
        )
except PredictionInterrupted as exc:
    print(len(calls), file=sys.stderr)
    sys.exit(exc.exit_code)
"""


def test_sigterm_stops_blockwise_labelling_between_blocks_and_removes_its_scratch(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", BLOCKWISE_UNDER_SIGTERM, str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "2"  # stopped before the third block
    assert list(tmp_path.iterdir()) == []
