"""Weights and inputs defined by a formula, so two implementations can be compared without a file.

Used both by ``generate_forward_record.py`` (run once beside the reference) and by
``tests/test_models.py`` (run here): each state-dict entry is filled from its *name* and shape
only, so the same numbers land in both models whatever order they build their modules in.
Depends on torch alone.
"""

from __future__ import annotations

import math
import zlib

import torch

#: how many output values are pinned per tensor, at evenly spaced flat positions
PINNED_POSITIONS = 16


def _wave(name: str, numel: int) -> torch.Tensor:
    """A smooth, non-repeating-looking sequence in [-1, 1] whose phase depends on the key name."""
    phase = (zlib.crc32(name.encode()) % 10_000) / 1000.0
    k = torch.arange(numel, dtype=torch.float64)
    return torch.sin(0.618 * k + phase) * torch.cos(0.0137 * k + 0.5 * phase)


def deterministic_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with the same keys and shapes as ``state``, every value from the formula."""
    out: dict[str, torch.Tensor] = {}
    for name, value in state.items():
        if not value.is_floating_point():  # num_batches_tracked
            out[name] = value.clone()
            continue
        wave = _wave(name, value.numel()).reshape(value.shape)
        leaf = name.rsplit(".", 1)[-1]
        if value.dim() >= 2:  # conv / linear kernels: keep activations of order one
            fan_in = value.numel() // value.shape[0]
            filled = wave * (math.sqrt(3.0 / fan_in))
        elif leaf == "running_var":
            filled = 1.0 + 0.5 * wave.abs()
        elif leaf == "weight":  # norm scales
            filled = 1.0 + 0.1 * wave
        else:  # biases, running means
            filled = 0.1 * wave
        out[name] = filled.to(value.dtype)
    return out


def deterministic_input(shape: tuple[int, ...]) -> torch.Tensor:
    """The fixed float32 input both implementations are run on."""
    numel = math.prod(shape)
    k = torch.arange(numel, dtype=torch.float64)
    return (torch.sin(0.37 * k) + 0.5 * torch.cos(0.011 * k)).reshape(shape).float()


def summarise(tensor: torch.Tensor) -> dict[str, object]:
    """Compact pinned values of an output: shape, sum/mean/std and values at fixed positions."""
    flat = tensor.detach().double().flatten()
    positions = torch.linspace(0, flat.numel() - 1, PINNED_POSITIONS).round().long()
    return {
        "shape": list(tensor.shape),
        "sum": flat.sum().item(),
        "mean": flat.mean().item(),
        "std": flat.std().item(),
        "positions": positions.tolist(),
        "values": flat[positions].tolist(),
    }
