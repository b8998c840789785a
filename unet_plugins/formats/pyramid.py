"""Coarser levels of a multiscale pyramid, computed box by box from the level above
(memory: a few chunks): the mean over 2x2x2 voxels for images, the nearest voxel (every
other one) for labels (a mean of label ids would invent labels).

Boxes are whole target chunks, so they can be filled in any order or at once by many
processes (:func:`level_boxes` + :class:`DownsampleBox`, mapped over a Dask cluster)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

Index = tuple[slice, ...]


def level_boxes(target_shape: tuple[int, ...], target_chunks: tuple[int, ...]) -> list[Index]:
    """(Z,Y,X) boxes of 2 x 2 x 2 target chunks tiling the target level."""
    box = tuple(c * 2 for c in target_chunks[-3:])
    spatial = target_shape[-3:]
    starts = [range(0, n, b) for n, b in zip(spatial, box)]
    return [
        tuple(slice(c, min(c + b, n)) for c, b, n in zip(corner, box, spatial))
        for corner in itertools.product(*starts)
    ]


class DownsampleBox:
    """Fills one box of ``target`` from ``source`` (picklable: a task on a Dask worker)."""

    def __init__(self, source: Any, target: Any, factors: tuple[int, ...], labels: bool) -> None:
        self.source = source
        self.target = target
        self.factors = factors
        self.labels = labels

    def __call__(self, out: Index) -> None:
        source, target, factors = self.source, self.target, self.factors
        lead = (slice(None),) * (len(target.shape) - 3)
        src = tuple(
            slice(o.start * f, min(o.stop * f, n))
            for o, f, n in zip(out, factors, source.shape[-3:])
        )
        values = np.asarray(source[(*lead, *src)])
        if self.labels:
            reduced = values[(*lead, *(slice(None, None, f) for f in factors))]
        else:
            reduced = block_mean(values, factors).astype(source.dtype)
        target[(*lead, *out)] = reduced


def block_mean(values: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean over ``factors`` boxes of the last three axes (edge boxes: what is there)."""
    result = values.astype(np.float64)
    for axis, f in zip(range(values.ndim - 3, values.ndim), factors):
        if f == 1:
            continue
        n = result.shape[axis]
        pad = (-n) % f
        if pad:
            edge = np.take(result, [n - 1] * pad, axis=axis)
            result = np.concatenate([result, edge], axis=axis)
        shape = list(result.shape)
        shape[axis : axis + 1] = [shape[axis] // f, f]
        result = result.reshape(shape).mean(axis=axis + 1)
    if np.issubdtype(values.dtype, np.integer):
        result = np.rint(result)
    return result
