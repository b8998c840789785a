"""Fast mode keeps the next batch in flight while the host blends the last one (issue 17):
``forward_patches`` with an asynchronous PatchForward must give exactly the patches, values and
order of the sequential loop, submitting one batch ahead. On a CPU the forward finishes inside
``submit``, so the pipeline is switched on by hand here; the CUDA test runs where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from predict_support import tiny_unet

from unet_core.array_prediction import array_batches, forward_patches
from unet_core.io.volume import Volume
from unet_core.prediction.inference import ForwardInFlight, PatchForward
from unet_core.tiling import patch_grid

PATCH, HALO = (8, 16, 16), (0, 4, 4)


class Recorded(PatchForward):
    """A real PatchForward that logs when batches are submitted and their results read."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.events: list[str] = []

    def submit(self, batch: torch.Tensor) -> ForwardInFlight:
        self.events.append("submit")
        return super().submit(batch)


def _patches(device: torch.device, asynchronous: bool, shape=(16, 40, 40), batch=2):
    model, _ = tiny_unet()
    forward = Recorded(model, device, amp="none")
    forward.asynchronous = asynchronous
    raw = np.random.default_rng(3).normal(size=shape).astype(np.float32)
    volume = Volume([raw], what="a test volume", path="<test>")
    indices = patch_grid(volume.spatial_shape, PATCH, (6, 12, 12))
    out = []
    for prob, index in forward_patches(
        forward,
        array_batches(volume, indices, HALO, batch),
        HALO,
        out_channels=int(model.out_channels),
    ):
        forward.events.append("patch")
        out.append((prob.copy(), index))
    return out, forward.events, len(indices)


def test_pipelined_patches_equal_the_sequential_ones_in_order() -> None:
    cpu = torch.device("cpu")
    sequential, seq_events, n = _patches(cpu, asynchronous=False)
    pipelined, events, _ = _patches(cpu, asynchronous=True)
    assert len(pipelined) == len(sequential) == n and n > 4
    for (a, ia), (b, ib) in zip(pipelined, sequential, strict=True):
        assert ia == ib
        np.testing.assert_array_equal(a, b)
    batches = (n + 1) // 2
    # sequential: each batch is forwarded through __call__, never submitted ahead
    assert "submit" in seq_events and seq_events[:2] == ["submit", "patch"]
    # pipelined: the second batch is submitted before the first batch's patches come out,
    # and every batch is submitted exactly once
    assert events[:3] == ["submit", "submit", "patch"]
    assert events.count("submit") == batches and events.count("patch") == n


@pytest.mark.parametrize("batch", [1, 64])
def test_pipeline_with_one_patch_per_batch_and_with_a_single_batch(batch: int) -> None:
    cpu = torch.device("cpu")
    sequential, _, n = _patches(cpu, asynchronous=False, batch=batch)
    pipelined, events, _ = _patches(cpu, asynchronous=True, batch=batch)
    assert [i for _, i in pipelined] == [i for _, i in sequential]
    assert events.count("submit") == -(-n // batch)
    for (a, _), (b, _) in zip(pipelined, sequential, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_cpu_forward_is_synchronous_and_returns_float32() -> None:
    model, _ = tiny_unet()
    forward = PatchForward(model, torch.device("cpu"), amp="none")
    assert forward.asynchronous is False
    batch = torch.randn(2, 1, *PATCH)
    in_flight = forward.submit(batch)
    result = in_flight.result()
    assert result.dtype == np.float32 and result.shape == (2, model.out_channels, *PATCH)
    np.testing.assert_array_equal(result, forward(batch))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_the_pipeline_overlaps_and_agrees_with_the_sequential_loop() -> None:
    cuda = torch.device("cuda")
    model, _ = tiny_unet()
    assert PatchForward(model, cuda, amp="none").asynchronous is True
    sequential, _, _ = _patches(cuda, asynchronous=False)
    pipelined, events, _ = _patches(cuda, asynchronous=True)
    assert events[:3] == ["submit", "submit", "patch"]
    for (a, ia), (b, ib) in zip(pipelined, sequential, strict=True):
        assert ia == ib
        np.testing.assert_array_equal(a, b)
    cpu, _, _ = _patches(torch.device("cpu"), asynchronous=False)
    for (a, _), (b, _) in zip(pipelined, cpu, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_forward_seconds_are_counted_per_volume(tmp_path) -> None:
    """A predictor reports the host seconds its forwards took for each volume, so that its own
    overhead is measured in the same run (benchmarks/predict.py), not against another run."""
    from predict_support import config, save_weights, write_volume

    from unet_core.prediction.run import run_prediction

    model, spec = tiny_unet()
    forward = PatchForward(model, torch.device("cpu"), amp="none")
    assert forward.seconds == 0.0
    forward(torch.randn(1, 1, *PATCH))
    once = forward.seconds
    forward(torch.randn(1, 1, *PATCH))
    assert 0.0 < once < forward.seconds
    rng = np.random.default_rng(0)
    big = write_volume(tmp_path / "big.h5", rng.random((32, 96, 96)).astype(np.float32))
    small = write_volume(tmp_path / "small.h5", rng.random((8, 16, 16)).astype(np.float32))
    cfg = config(spec, save_weights(model, tmp_path / "w.pytorch"), [big, small], tmp_path / "o",
                 patch=PATCH, stride=PATCH, halo=(0, 0, 0))  # fmt: skip
    first, second = run_prediction(cfg)
    assert first.stats["patches"] > 20 and second.stats["patches"] == 1
    for written in (first, second):
        # this volume's forwards only: the small one's are not the big one's plus its own
        assert 0.0 < written.stats["forward_seconds"] <= written.stats["seconds"]
