"""Batching test items ``(tensor, index-or-path)``: tensors stacked, the rest kept as a list."""

from __future__ import annotations

from typing import Any

from unet_core.errors import DataError


def prediction_collate(batch: list[tuple[Any, Any]]) -> tuple[Any, list[Any]]:
    """``[(x, where), ...] -> (stacked x, [where, ...])``; DataError if the x differ in shape."""
    import torch

    tensors = [item[0] for item in batch]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) > 1:
        raise DataError(
            f"A prediction batch holds inputs of different shapes {sorted(shapes)}; they "
            f"cannot be stacked. Use loaders.batch_size: 1, or make the inputs one size "
            f"(e.g. CropToFixed in the test transformer)."
        )
    return torch.stack(tensors, 0), [item[1] for item in batch]
