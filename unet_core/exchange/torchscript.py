"""TorchScript export: traced or scripted, parity-checked, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from unet_core.errors import ExportError
from unet_core.exchange.parity import check_exported
from unet_core.io.atomic import atomic_output

if TYPE_CHECKING:
    import torch

Mode = Literal["trace", "script"]


def to_torchscript(model: torch.nn.Module, x: np.ndarray, mode: Mode = "trace") -> torch.nn.Module:
    """The network as a TorchScript module (eval mode; sizes stay dynamic when traced)."""
    import torch

    model.eval()
    try:
        with torch.no_grad():
            if mode == "script":
                return torch.jit.script(model)
            return torch.jit.trace(model, torch.from_numpy(x), check_trace=False)  # type: ignore[no-any-return, no-untyped-call]
    except Exception as exc:  # noqa: BLE001 - the compiler's message is the paragraph's core
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"torch.jit.{mode} cannot compile {type(model).__name__}: {first}. Try "
            f"--torchscript-mode {'trace' if mode == 'script' else 'script'}, or export ONNX."
        ) from None


def run_torchscript(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.asarray(module(torch.from_numpy(x)).numpy())


def export_torchscript(
    model: torch.nn.Module, x: np.ndarray, out: Path, *, mode: Mode = "trace"
) -> float:
    """Write ``out`` if the scripted module matches the network on ``x``; returns the max diff.

    The check runs on the module as reloaded from the saved bytes, so what is compared is what
    the user gets.
    """
    import torch

    scripted = to_torchscript(model, x, mode)
    with atomic_output(out) as tmp:
        torch.jit.save(scripted, str(tmp))
        reloaded = torch.jit.load(str(tmp), map_location="cpu")  # type: ignore[no-untyped-call]
        diff = check_exported(
            model, x, lambda a: run_torchscript(reloaded, a), what="TorchScript module"
        )
    return diff
