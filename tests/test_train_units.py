"""The training engine's small parts: devices, RNG snapshots, writer, formatter, progress."""

from __future__ import annotations

import io
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core.engine.amp import Precision, memory_format
from unet_core.engine.checkpoint import load_checkpoint
from unet_core.engine.device import resolve_device
from unet_core.engine.interrupts import InterruptGuard
from unet_core.engine.progress import LineProgress, Progress, make_progress
from unet_core.errors import CheckpointError, ConfigError
from unet_core.training import data_order, distributed
from unet_core.training.snapshots import CheckpointWriter, cpu_copy, rng_state, set_rng_state
from unet_core.training.tensorboard import TensorBoardLogger


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("CPU") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert resolve_device(None) == torch.device("cpu")
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="cpu, cuda, cuda:N, mps or auto"):
        resolve_device("gpu")


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.standard_normal()  # leaves a cached gaussian in numpy's legacy state
    state = rng_state()
    writer = CheckpointWriter()
    writer.submit({"model_state_dict": {}, "rng_state": state}, [(tmp_path / "c.pt", False)])
    assert writer.wait() == [(tmp_path / "c.pt", False)]
    expected = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng_state"])
    again = (random.random(), np.random.standard_normal(), np.random.rand(), torch.rand(3))
    assert again[:3] == expected[:3] and torch.equal(again[3], expected[3])


def test_cpu_copy_never_shares_storage() -> None:
    weights = {"w": torch.ones(3), "nested": [{"m": torch.zeros(2)}], "step": 4}
    copied = cpu_copy(weights)
    weights["w"].add_(1)
    weights["nested"][0]["m"].add_(1)
    assert copied["w"].tolist() == [1, 1, 1] and copied["nested"][0]["m"].tolist() == [0, 0]
    assert copied["step"] == 4


def test_writer_reports_a_failed_write_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    writer = CheckpointWriter()
    writer.submit({"model_state_dict": {"w": torch.ones(1)}}, [(target, False)])
    writer.wait()
    before = target.read_bytes()
    writer.submit({"bad": lambda: None}, [(target, False)])  # torch.save cannot pickle this
    with pytest.raises(CheckpointError):
        writer.wait()
    assert target.read_bytes() == before


def test_tensorboard_formatter_tags_follow_the_reference(tmp_path: Path) -> None:
    logger = TensorBoardLogger(tmp_path, run_name="run")
    one = logger.format("inputs", np.random.rand(2, 1, 5, 8, 8))
    assert [t for t, _ in one] == ["inputs/batch_0/slice_2", "inputs/batch_1/slice_2"]
    assert one[0][1].shape == (1, 8, 8) and one[0][1].max() == pytest.approx(1.0)
    many = logger.format("inputs", np.random.rand(1, 2, 4, 8, 8))
    assert [t for t, _ in many] == [
        "inputs/batch_0/channel_0/slice_2",
        "inputs/batch_0/channel_1/slice_2",
    ]
    classes = logger.format("predictions", np.random.rand(1, 3, 4, 8, 8))
    assert classes[0][0] == "predictions/batch_0/slice_2" and classes[0][1].shape == (3, 8, 8)
    labels = logger.format("targets", np.random.randint(0, 3, (1, 6, 8, 8)))
    assert labels[0][0] == "targets/batch_0/slice_3" and labels[0][1].shape == (3, 8, 8)
    logger.skip_last_target = True
    assert logger.format("targets", np.random.rand(1, 2, 4, 8, 8))[0][1].shape == (1, 8, 8)
    logger.close()


def test_line_progress_prints_iteration_rate_eta_loss_and_score() -> None:
    out = io.StringIO()
    progress = LineProgress(every=2, stream=out)
    progress.start(total=4, done=0)
    for i in range(1, 5):
        progress.step(i, 0.5 / i)
        if i == 2:
            progress.validated(2, 0.75, 0.3, True)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("iteration 2/4 | ") and "it/s" in lines[0] and "ETA" in lines[0]
    assert "loss 0.25" in lines[0]
    assert lines[1] == "validation at iteration 2: score 0.75, loss 0.3 (best so far)"
    assert lines[2].startswith("iteration 4/4") and lines[2].endswith("val score 0.75")
    assert type(make_progress("auto", every=1, is_main=False)) is Progress
    assert type(make_progress("none", every=1)) is Progress


def test_interrupt_guard_records_sigterm_and_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.requested and guard.name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_precision_options() -> None:
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Precision("fp16", cpu)
    bf16 = Precision("bf16", cpu)
    with bf16.autocast():
        out = torch.nn.Conv3d(1, 2, 3)(torch.rand(1, 1, 4, 4, 4))
    assert out.dtype == torch.bfloat16 and bf16.scaler is None
    assert memory_format(3, True) is torch.channels_last_3d
    assert memory_format(2, True) is torch.channels_last and memory_format(3, False) is None


def test_train_loader_is_rebuilt_with_per_epoch_workers() -> None:
    from torch.utils.data import DataLoader, TensorDataset

    data = TensorDataset(torch.arange(10.0))
    gen = torch.Generator().manual_seed(5)
    loader = DataLoader(
        data, batch_size=2, shuffle=True, num_workers=1, persistent_workers=True, generator=gen
    )
    fresh = data_order.without_persistent_workers(loader)
    assert (
        not fresh.persistent_workers and fresh.sampler is loader.sampler and fresh.batch_size == 2
    )
    state = data_order.capture(fresh)
    first = [b[0].tolist() for b in fresh]
    data_order.restore(fresh, state)
    assert [b[0].tolist() for b in fresh] == first


def test_single_process_context() -> None:
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK") if k in os.environ}
    try:
        ctx = distributed.from_environment()
        assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
        assert distributed.all_reduce_sum([1.0, 2.0], ctx, torch.device("cpu")) == [1.0, 2.0]
    finally:
        os.environ.update(env)


def test_interrupt_guard_second_sigint_aborts_at_once() -> None:
    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
