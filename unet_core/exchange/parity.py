"""The check every export runs before anything is written: exported output == eager output."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from unet_core.errors import ExportError

if TYPE_CHECKING:
    import torch

#: Largest absolute difference accepted between an exported model and the eager network.
PARITY_TOLERANCE = 1e-4


def check_parity(
    expected: np.ndarray,
    got: np.ndarray,
    *,
    what: str,
    tolerance: float = PARITY_TOLERANCE,
    advice: str | None = None,
) -> float:
    """The max absolute difference; raises ExportError (nothing written) beyond ``tolerance``.

    ``advice`` replaces the way out the message names (for exports that are not `unet export`).
    """
    if expected.shape != got.shape:
        raise ExportError(
            f"The {what} gives an output of shape {tuple(got.shape)} where the network gives "
            f"{tuple(expected.shape)} on the same test input, so it was not written. "
            + (advice or "Report this with the model config; export another format meanwhile.")
        )
    diff = float(np.max(np.abs(expected.astype(np.float64) - got.astype(np.float64))))
    if not np.isfinite(diff) or diff > tolerance:
        raise ExportError(
            f"The {what} differs from the network by up to {diff:.3g} on the test input "
            f"(allowed {tolerance:g}), so it was not written. The exported graph does not "
            "compute what the model computes (an operation the exporter handles differently); "
            + (
                advice
                or "try the other TorchScript mode (--torchscript-mode script|trace) or "
                "another format."
            )
        )
    return diff


def eager_output(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """The network's own eval-mode output on ``x`` (the parity reference)."""
    import torch

    with torch.no_grad():
        return np.asarray(model(torch.from_numpy(x)).numpy())


def grown(x: np.ndarray) -> np.ndarray:
    """``x`` with its last axis doubled (mirrored), another size the network can take."""
    return np.ascontiguousarray(np.concatenate([x, x[..., ::-1]], axis=-1))


def check_exported(
    model: torch.nn.Module,
    x: np.ndarray,
    run: Callable[[np.ndarray], np.ndarray],
    *,
    what: str,
    advice: str | None = None,
) -> float:
    """Exported (``run``) == eager on ``x`` and on a larger input, which proves the sizes are
    not frozen into the graph; returns the max difference on ``x``."""
    diff = check_parity(eager_output(model, x), run(x), what=what, advice=advice)
    bigger = grown(x)
    check_parity(
        eager_output(model, bigger), run(bigger), what=f"{what} (on a larger input)", advice=advice
    )
    return diff
