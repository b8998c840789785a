"""A run folder belongs to one run: refusal, --overwrite, the lock, --resume into another folder.

Real `unet train` processes on tiny configs (see test_train_support), real signals, and file
snapshots (content hash, inode, mtime, ctime) to prove what was never written.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train_support import (
    reference_config,
    run_unet,
    subprocess_env,
    tiny,
    unet_command,
    write_config,
)

from unet_core.config import config_from_dict
from unet_core.engine.checkpoint import load_checkpoint
from unet_core.engine.run_lock import LOCK_NAME, FolderLock
from unet_core.engine.training import train
from unet_core.errors import CheckpointError, UsageError

LAST = "last_checkpoint.pytorch"
BEST = "best_checkpoint.pytorch"


def _train(config: dict[str, Any], **kwargs: Any) -> Any:
    torch.set_num_threads(1)
    return train(config_from_dict(config), **kwargs)


def _snapshot(folder: Path, *, with_ctime: bool = True) -> dict[str, tuple[Any, ...]]:
    """Every entry under ``folder``: content hash, inode, mtime (and ctime: any metadata write)."""
    out: dict[str, tuple[Any, ...]] = {}
    for path in sorted(folder.rglob("*")):
        st = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        key = (digest, st.st_ino, st.st_mtime_ns) + ((st.st_ctime_ns,) if with_ctime else ())
        out[str(path.relative_to(folder))] = key
    return out


def _assert_one_paragraph_refusal(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    message = " ".join(done.stderr.split())  # rich wraps long lines for the terminal width
    for needle in needles:
        assert needle in message, (needle, done.stderr)
    return message


def _run_id(folder: Path) -> str | None:
    manifest = folder / "run.json"
    return json.loads(manifest.read_text())["run_id"] if manifest.exists() else None


def _start(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        unet_command("train", "--config", str(config), *extra),
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"run exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def test_new_run_into_another_runs_folder_refuses_before_any_work(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _train(tiny(reference_config(ck), iterations=2, every=1))
    before = _snapshot(ck)
    config = tiny(reference_config(ck), iterations=2, every=1)
    config["loaders"]["train"]["file_paths"] = [str(tmp_path / "never_read.h5")]
    done = run_unet(
        "train", "--config", str(write_config(config, tmp_path / "c.yml")), env=subprocess_env()
    )
    message = _assert_one_paragraph_refusal(
        done, str(ck), "already belongs to run", "--resume", str(ck / LAST), "--overwrite"
    )
    assert "previous-runs" in message and "never_read" not in message  # no data was read
    assert _snapshot(ck) == before  # not one byte, inode or timestamp changed
    assert not (ck / LOCK_NAME).exists()


def test_overwrite_moves_the_old_run_aside_byte_identical(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _train(tiny(reference_config(ck), iterations=2, every=1))
    old_id = _run_id(ck)
    (ck / "notes.txt").write_text("the user's own file")
    (ck / "weights_I_like.pytorch").write_bytes(b"not ours")
    old = _snapshot(ck, with_ctime=False)  # a rename updates ctime; content/inode/mtime do not
    user_files = {
        k: v for k, v in _snapshot(ck).items() if k in ("notes.txt", "weights_I_like.pytorch")
    }

    # stops before its first validation: it writes a last checkpoint but no best one
    config = tiny(reference_config(ck), iterations=2, every=50)
    done = run_unet(
        "train",
        "--config",
        str(write_config(config, tmp_path / "c.yml")),
        "--overwrite",
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (aside,) = (ck / "previous-runs").iterdir()
    assert old_id and aside.name.endswith("_" + old_id)
    assert str(aside) in " ".join(done.stderr.split())  # it says where the old run went
    moved = _snapshot(aside, with_ctime=False)
    assert {
        k: v for k, v in old.items() if k.split("/")[0] in (LAST, BEST, "run.json", "logs")
    } == moved
    now = _snapshot(ck)
    assert {k: now[k] for k in user_files} == user_files  # the user's files: untouched
    assert (ck / LAST).is_file() and not (ck / BEST).exists()  # no stale best beside the new last
    assert load_checkpoint(ck / LAST)["num_iterations"] == 2
    manifest = json.loads((ck / "run.json").read_text())
    assert manifest["run_id"] != old_id and manifest["model"]["name"] == "UNet3D"
    assert not (ck / LOCK_NAME).exists()


def test_second_process_into_a_running_folder_refuses_and_the_first_is_intact(
    tmp_path: Path,
) -> None:
    ck = tmp_path / "ck"
    config = write_config(tiny(reference_config(ck), iterations=400, every=5), tmp_path / "c.yml")
    first = _start(config)
    try:
        _wait_for(ck / LAST, first)
        for extra in (["--overwrite"], ["--resume", str(ck / LAST)]):  # the lock wins over both
            done = run_unet("train", "--config", str(config), *extra, env=subprocess_env())
            _assert_one_paragraph_refusal(
                done, str(ck), "is in use", f"pid {first.pid} on host", "--resume", "--overwrite"
            )
        assert first.poll() is None  # still training, its temporaries untouched
        assert json.loads((ck / LOCK_NAME).read_text())["pid"] == first.pid
        first.send_signal(signal.SIGTERM)
        out, _ = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 128 + signal.SIGTERM, out  # its own orderly stop, no crash
    assert "Traceback" not in out
    ckpt = load_checkpoint(ck / LAST)
    assert 5 <= ckpt["num_iterations"] < 400
    assert not list(ck.glob(".*.tmp")) and not (ck / "previous-runs").exists()
    assert not (ck / LOCK_NAME).exists()


def test_sigkilled_run_lock_is_taken_over_and_its_temporaries_cleaned(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    config = write_config(tiny(reference_config(ck), iterations=400, every=5), tmp_path / "c.yml")
    proc = _start(config)
    _wait_for(ck / LAST, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert (ck / LOCK_NAME).exists()  # left behind, but the kernel freed the lock
    run_id = json.loads((ck / "run.json").read_text())["run_id"]
    killed_at = load_checkpoint(ck / LAST)["num_iterations"]
    stale = ck / f".{LAST}.{proc.pid}.x1y2.tmp"  # what a kill during a checkpoint write leaves
    stale.write_bytes(b"half a checkpoint")

    done = run_unet(
        "train",
        "--config",
        str(config),
        "--resume",
        str(ck / LAST),
        "--set",
        f"trainer.max_num_iterations={killed_at + 2}",
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    notes = " ".join(done.stderr.split())
    assert f"Took over the lock of {ck}" in notes and f"pid {proc.pid}" in notes
    # ours and any a real write left when it was killed; only our own names, only under the lock
    assert re.search(r"Removed \d+ temporary file", notes) and stale.name in notes
    assert not list(ck.glob(".*.tmp"))
    assert not stale.exists() and not (ck / LOCK_NAME).exists()
    assert load_checkpoint(ck / LAST)["num_iterations"] == killed_at + 2
    manifest = json.loads((ck / "run.json").read_text())
    assert manifest["run_id"] == run_id  # the same run, continued in place
    assert manifest["resumed_from"][-1]["checkpoint"] == str(ck / LAST)


def test_resume_into_another_folder_leaves_the_old_one_untouched(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    _train(tiny(reference_config(old), iterations=2, every=1))
    before = _snapshot(old)
    old_id = _run_id(old)
    config = write_config(tiny(reference_config(new), iterations=4, every=1), tmp_path / "c.yml")
    done = run_unet(
        "train",
        "--config",
        str(config),
        "--resume",
        str(old / LAST),
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert _snapshot(old) == before  # not one byte, inode or timestamp changed
    assert load_checkpoint(new / LAST)["num_iterations"] == 4
    assert (new / BEST).is_file()
    manifest = json.loads((new / "run.json").read_text())
    assert manifest["run_id"] != old_id
    assert manifest["resumed_from"] == [{"checkpoint": str(old / LAST), "at": manifest["created"]}]

    # resuming from the old run again into `new`, which now belongs to a run, is refused
    again = run_unet(
        "train", "--config", str(config), "--resume", str(old / LAST), env=subprocess_env()
    )
    _assert_one_paragraph_refusal(
        again, str(new), "outside this folder", f"--resume {new / LAST}", "--overwrite"
    )


def test_resume_without_config_continues_in_the_checkpoints_folder(tmp_path: Path) -> None:
    """The checkpoint's saved config names its original folder; the run continues where the
    checkpoint is (e.g. a run folder that was moved), not in that stale path."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    _train(tiny(reference_config(first), iterations=2, every=1))
    first.rename(moved)
    done = run_unet(
        "train",
        "--resume",
        str(moved / LAST),
        "--set",
        "trainer.max_num_iterations=3",
        env=subprocess_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert not first.exists()
    assert load_checkpoint(moved / LAST)["num_iterations"] == 3
    manifest = json.loads((moved / "run.json").read_text())  # the same run, continued
    assert manifest["resumed_from"][-1]["checkpoint"] == str(moved / LAST)


def test_overwrite_with_resume_in_place_is_a_usage_error(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _train(tiny(reference_config(ck), iterations=1, every=1))
    before = _snapshot(ck)
    with pytest.raises(UsageError) as info:
        _train(tiny(reference_config(ck), iterations=2, every=1), resume=ck / LAST, overwrite=True)
    assert "contradict" in str(info.value) and str(ck) in str(info.value)
    assert _snapshot(ck) == before


def test_unrelated_files_do_not_make_a_folder_owned(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "readme.txt").write_text("mine")
    before = _snapshot(ck)
    _train(tiny(reference_config(ck), iterations=1, every=1))
    assert {k: v for k, v in _snapshot(ck).items() if k == "readme.txt"} == before
    assert (ck / "run.json").is_file() and not (ck / "previous-runs").exists()


def test_lock_is_exclusive_between_open_files_and_free_after_release(tmp_path: Path) -> None:
    held = FolderLock.acquire(tmp_path)
    with pytest.raises(CheckpointError, match="is in use"):
        FolderLock.acquire(tmp_path)
    held.release()
    again = FolderLock.acquire(tmp_path)
    assert again.previous is None  # a released lock leaves no holder behind
    again.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_nproc_refuses_an_owned_folder_before_launching_torchrun(tmp_path: Path) -> None:
    ck = tmp_path / "ck"
    _train(tiny(reference_config(ck), iterations=1, every=1))
    before = _snapshot(ck)
    config = write_config(tiny(reference_config(ck), iterations=2, every=1), tmp_path / "c.yml")
    done = run_unet(
        "train", "--config", str(config), "--nproc", "2", "--device", "cpu", env=subprocess_env()
    )
    _assert_one_paragraph_refusal(done, str(ck), "already belongs to run", "--overwrite")
    assert "Launching: torchrun" not in done.stderr  # no rank was started
    assert _snapshot(ck) == before


def test_a_trainer_built_alone_claims_its_folder_when_it_fits(tmp_path: Path) -> None:
    from unet_core.engine.training import build_trainer

    ck = tmp_path / "ck"
    _train(tiny(reference_config(ck), iterations=1, every=1))
    checkpoints = {k: v for k, v in _snapshot(ck).items() if k.endswith(".pytorch")}
    trainer = build_trainer(config_from_dict(tiny(reference_config(ck), iterations=2, every=1)))
    with pytest.raises(CheckpointError, match="already belongs to run"):
        trainer.fit()
    assert {k: v for k, v in _snapshot(ck).items() if k.endswith(".pytorch")} == checkpoints
    assert trainer.iteration == 0 and not (ck / LOCK_NAME).exists()


def test_under_torchrun_rank_0_refuses_and_the_other_rank_does_not_hang(tmp_path: Path) -> None:
    """torchrun started directly (no `--nproc` pre-check): rank 0 claims the folder before
    joining the process group, refuses, and torchrun stops rank 1 instead of leaving it waiting."""
    import sys

    ck = tmp_path / "ck"
    _train(tiny(reference_config(ck), iterations=1, every=1))
    before = _snapshot(ck)
    config = write_config(tiny(reference_config(ck), iterations=2, every=1), tmp_path / "c.yml")
    env = subprocess_env()
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + ["-m", "unet_core.cli.main", "train", "--config", str(config), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode != 0
    assert time.monotonic() - started < 200  # the process group's 30 min timeout never applies
    refusal = " ".join(done.stderr.split())
    assert refusal.count("already belongs to run") == 1 and str(ck) in refusal
    assert _snapshot(ck) == before


def test_a_new_run_that_saved_nothing_withdraws_its_claim(tmp_path) -> None:
    """A run that failed before its first checkpoint leaves no run.json: re-running works."""
    from unet_core.engine.run_folder import MANIFEST, claim

    folder = claim(tmp_path / "run")
    folder.start(config_from_dict(tiny(reference_config(tmp_path / "run"))), resumed_from=None)
    assert (tmp_path / "run" / MANIFEST).exists()
    folder.release()
    assert not (tmp_path / "run" / MANIFEST).exists()
    again = claim(tmp_path / "run")  # no refusal: the folder holds nothing of a run
    again.start(config_from_dict(tiny(reference_config(tmp_path / "run"))), resumed_from=None)
    (tmp_path / "run" / "last_checkpoint.pytorch").write_bytes(b"x")
    again.release()
    assert (tmp_path / "run" / MANIFEST).exists()  # a run with a checkpoint keeps its claim
