"""`unet train` as a real process: SIGKILL + resume, SIGTERM, 2-process DDP under torchrun.

Hooks reach these processes the way a third-party package's would: a distribution on
PYTHONPATH declaring a ``unet.hooks`` entry point (see ``install_hook_package``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_train_support import (
    install_hook_package,
    reference_config,
    run_unet,
    state_hash,
    subprocess_env,
    tiny,
    unet_command,
    write_config,
)

from unet_core.engine.checkpoint import load_checkpoint


def _start(config: Path, env: dict[str, str], *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        unet_command("train", "--config", str(config), *extra),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"training exited early:\n{proc.stdout.read() if proc.stdout else ''}"
            )
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.02)


def test_sigkill_then_resume_ends_with_the_uninterrupted_runs_weights(tmp_path: Path) -> None:
    """Killed at an unknown moment, resumed from its last checkpoint, a run ends bit-identical to
    the same config run straight through: same weights (sha256 of every tensor's bytes), same
    best score. Bit-identical, not approximately equal: both runs are single-threaded on the CPU
    with the seeded RNG states restored from the checkpoint, so nothing may differ."""
    straight_dir = tmp_path / "straight"
    straight_config = tiny(reference_config(straight_dir), iterations=60, every=5)
    straight = run_unet(
        "train", "--config", str(write_config(straight_config, tmp_path / "s.yml")),
        env=subprocess_env(), timeout=300,
    )  # fmt: skip
    assert straight.returncode == 0, straight.stdout + straight.stderr
    uninterrupted = load_checkpoint(straight_dir / "last_checkpoint.pytorch")
    assert uninterrupted["num_iterations"] == 60

    ckdir = tmp_path / "ck"
    config = write_config(tiny(reference_config(ckdir), iterations=60, every=5), tmp_path / "c.yml")
    env = subprocess_env(tmp_path / "hooks", install_hook_package(tmp_path / "plugins"))
    proc = _start(config, env)
    last = ckdir / "last_checkpoint.pytorch"
    _wait_for(last, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(last)["num_iterations"]  # a complete file, never truncated
    assert 5 <= killed_at < 60 and killed_at % 5 == 0

    # --resume alone: the checkpoint carries its config
    done = run_unet("train", "--resume", str(last), env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Finished after 60 iterations" in done.stdout
    final = load_checkpoint(last)
    assert final["num_iterations"] == 60
    assert load_checkpoint(ckdir / "best_checkpoint.pytorch")["num_iterations"] % 5 == 0
    start = json.loads((tmp_path / "hooks" / "start_rank0.json").read_text())
    assert start == {"iteration": killed_at, "world": 1}  # the resumed process started there
    end = json.loads((tmp_path / "hooks" / "end_rank0.json").read_text())
    assert end["iteration"] == 60 and end["hash"] == state_hash(final["model_state_dict"])
    assert end["best_score"] == pytest.approx(final["best_eval_score"])
    assert not list(ckdir.glob(".*.tmp"))
    # the claim: the interruption left no trace in the result
    assert state_hash(final["model_state_dict"]) == state_hash(uninterrupted["model_state_dict"])
    assert final["best_eval_score"] == uninterrupted["best_eval_score"]


def test_sigterm_saves_a_checkpoint_and_exits_nonzero(tmp_path: Path) -> None:
    ckdir = tmp_path / "ck"
    config = write_config(
        tiny(reference_config(ckdir), iterations=400, every=5), tmp_path / "c.yml"
    )
    env = subprocess_env(tmp_path / "hooks", install_hook_package(tmp_path / "plugins"))
    proc = _start(config, env)
    _wait_for(ckdir / "last_checkpoint.pytorch", proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM" in out and "--resume" in out and "Traceback" not in out
    saved = (tmp_path / "hooks" / "saved_rank0.txt").read_text().split("\n")
    last_saved = [line for line in saved if "last_checkpoint" in line][-1]
    ckpt = load_checkpoint(ckdir / "last_checkpoint.pytorch")
    assert int(last_saved.split()[-1]) == ckpt["num_iterations"] < 400
    assert not (tmp_path / "hooks" / "end_rank0.json").exists()  # it did not "finish"


def test_two_process_gloo_ddp_stays_in_sync(tmp_path: Path) -> None:
    ckdir = tmp_path / "ck"
    config = write_config(tiny(reference_config(ckdir), iterations=6, every=3), tmp_path / "c.yml")
    env, hooks = _ddp_env(tmp_path)
    done, ranks = _ddp_train(env, hooks, "--config", str(config))
    assert ranks[0]["iteration"] == ranks[1]["iteration"] == 6
    assert ranks[0]["hash"] == ranks[1]["hash"]  # DDP kept the replicas identical
    assert ranks[0]["samples"] == ranks[1]["samples"] == 6
    assert [r["sampler"] for r in ranks] == ["DistributedSampler"] * 2
    assert [r["sampler_rank"] for r in ranks] == [0, 1]  # each rank reads its own shard
    assert json.loads((hooks / "start_rank1.json").read_text())["world"] == 2
    ckpt = load_checkpoint(ckdir / "last_checkpoint.pytorch")
    assert state_hash(ckpt["model_state_dict"]) == ranks[0]["hash"]
    assert ckpt["world_size"] == 2 and len(ckpt["rank_states"]) == 2
    assert (hooks / "saved_rank0.txt").exists() and not (hooks / "saved_rank1.txt").exists()
    assert len(list((ckdir / "logs").iterdir())) == 1  # one TensorBoard run, from rank 0
    assert done.stdout.count("Finished after 6 iterations") == 1  # rank 0 reports alone


def _ddp_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    hooks = tmp_path / "hooks"
    env = subprocess_env(hooks, install_hook_package(tmp_path / "plugins"))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env, hooks


def _ddp_train(
    env: dict[str, str], hooks: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    """``unet train --nproc 2`` on the CPU to the end; what each rank's end hook recorded."""
    done = subprocess.run(
        unet_command("train", *args, "--nproc", "2", "--device", "cpu"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, [json.loads((hooks / f"end_rank{r}.json").read_text()) for r in (0, 1)]


def test_sigterm_under_two_process_ddp_stops_every_rank_at_one_iteration(tmp_path: Path) -> None:
    """torchrun forwards SIGTERM to both ranks, which may see it one step apart: they agree on
    the stop iteration, save one complete checkpoint with both ranks' state, and resume."""
    ckdir = tmp_path / "ck"
    config = write_config(
        tiny(reference_config(ckdir), iterations=400, every=4), tmp_path / "c.yml"
    )
    env, hooks = _ddp_env(tmp_path)
    proc = _start(config, env, "--nproc", "2", "--device", "cpu")
    last = ckdir / "last_checkpoint.pytorch"
    _wait_for(last, proc, timeout=240)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode != 0, out
    assert "SIGTERM" in out and "--resume" in out
    ckpt = load_checkpoint(last)
    stopped = ckpt["num_iterations"]
    assert 4 <= stopped < 400
    assert ckpt["world_size"] == 2 and len(ckpt["rank_states"]) == 2
    saved = (hooks / "saved_rank0.txt").read_text().split("\n")
    assert int([line for line in saved if "last_checkpoint" in line][-1].split()[-1]) == stopped
    assert not list(ckdir.glob(".*.tmp"))

    _, ranks = _ddp_train(
        env, hooks, "--resume", str(last), "--set", f"trainer.max_num_iterations={stopped + 2}"
    )
    assert ranks[0]["iteration"] == ranks[1]["iteration"] == stopped + 2
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert json.loads((hooks / "start_rank1.json").read_text())["iteration"] == stopped


def test_cli_errors_are_one_paragraph(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    config = write_config(tiny(reference_config(blocker / "ck")), tmp_path / "c.yml")
    done = run_unet("train", "--config", str(config), env=subprocess_env(), timeout=120)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "trainer.checkpoint_dir" in done.stderr and "not started" in done.stderr
    missing = run_unet("train", env=subprocess_env(), timeout=60)
    assert missing.returncode == 2 and "--config" in missing.stderr
    assert os.environ.get("RANK") is None
