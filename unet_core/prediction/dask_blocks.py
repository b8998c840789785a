"""One task of distributed prediction: predict one output block on a Dask worker.

A block is a box of whole output chunks. Its task forwards every patch of the global patch
grid that touches it (in the grid's order, so ``overwrite`` blending agrees with one
process), blends them with the engine's own :class:`BlockAccumulator`, writes only its own
block (its chunks belong to no other task, so no locks) and then marks the block finished in
the output's ``_unet_blocks`` array. The predictor arrives once per worker (scattered), so
the model is deserialised and placed on the worker's device once, not once per block.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from unet_core.io.region import halo_box
from unet_core.tiling import Index

#: Name of the per-block "finished" array inside the output (uint8, one chunk per block).
BLOCKS_ARRAY = "_unet_blocks"

#: This worker's predictor, by digest of model weights + predictor settings (one at a time).
_PREDICTORS: dict[str, Any] = {}
#: What this worker did: predictors prepared and blocks predicted (tests read these).
COUNTS = {"loads": 0, "blocks": 0}


def block_grid(volume: Sequence[int], block: Sequence[int]) -> tuple[int, ...]:
    """Blocks per axis."""
    return tuple(-(-int(v) // int(b)) for v, b in zip(volume, block))


def block_index(ids: Sequence[int], block: Sequence[int], volume: Sequence[int]) -> Index:
    return tuple(slice(i * b, min((i + 1) * b, v)) for i, b, v in zip(ids, block, volume))


def patches_per_block(
    indices: Sequence[Index], block: Sequence[int]
) -> dict[tuple[int, ...], list[int]]:
    """Block id -> the (ascending) numbers of the patches that touch it."""
    touching: dict[tuple[int, ...], list[int]] = {}
    for number, index in enumerate(indices):
        ranges = [range(s.start // b, (s.stop - 1) // b + 1) for s, b in zip(index, block)]
        for ids in itertools.product(*ranges):
            touching.setdefault(ids, []).append(number)
    return touching


class PatchSubset:
    """The patches ``numbers`` of a patch dataset, looking like the dataset to a predictor.

    A dataset with a ``window(box)`` method (optional) is narrowed to the box its patches and
    halo read, so the block's input is read in one piece."""

    def __init__(self, dataset: Any, numbers: Sequence[int]) -> None:
        self.numbers = list(numbers)
        self.file_path = dataset.file_path
        self.halo_shape = dataset.halo_shape
        self.volume_shape = dataset.volume_shape
        self.raw_slices = [dataset.raw_slices[n] for n in self.numbers]
        self.collate_fn = getattr(dataset, "collate_fn", None)
        window = getattr(dataset, "window", None)  # optional: read the block + halo once
        if callable(window) and self.raw_slices:
            spatial = [tuple(s)[-3:] for s in self.raw_slices]
            dataset = window(halo_box(spatial, self.halo_shape, self.volume_shape))
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, item: int) -> Any:
        return self.dataset[self.numbers[item]]


def worker_predictor(predictor: Any, digest: str) -> Any:
    """The predictor of ``digest`` on this worker, prepared once (``on_worker``; torch threads =
    the worker's threads). Later blocks reuse it."""
    cached = _PREDICTORS.get(digest)
    if cached is not None:
        return cached
    import torch

    from unet_core.engine.allocator import keep_freed_memory

    keep_freed_memory()  # a compute process, as `unet predict`'s own
    _PREDICTORS.clear()  # one model per worker: a new run's model replaces the last one
    predictor.on_worker()
    try:
        from distributed import get_worker

        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    except (ImportError, ValueError):
        pass
    _PREDICTORS[digest] = predictor
    COUNTS["loads"] += 1
    return predictor


def predict_block(
    predictor: Any,
    digest: str,
    dataset: Any,
    out: Any,
    marks: Any,
    ids: tuple[int, ...],
    block: tuple[int, ...],
    numbers: list[int],
    blending: Literal["overwrite", "gaussian"],
) -> tuple[int, ...]:
    """Predict the block ``ids`` into ``out``, then mark it finished; returns ``ids``."""
    from unet_core.prediction.blending import BlockAccumulator

    predictor = worker_predictor(predictor, digest)
    volume = tuple(int(v) for v in dataset.volume_shape)
    mine = block_index(ids, block, volume)
    subset = PatchSubset(dataset, numbers)
    indices = [tuple(s)[-3:] for s in subset.raw_slices]
    done: list[bool] = []

    def sink(index: Index, values: np.ndarray) -> None:
        if index == mine:
            stored = predictor.stored(values)
            out[(slice(None), *index) if len(out.shape) == 4 else index] = stored
            done.append(True)

    acc = BlockAccumulator(indices, predictor.channels, volume, block, blending, sink)
    for prob, index in predictor.patches(subset):
        acc.add(prob, index)
    acc.close()
    if not done:
        raise RuntimeError(f"block {ids} of {dataset.file_path} received no patch")
    marks[ids] = 1
    COUNTS["blocks"] += 1
    return ids


class BlockReader:
    """Probabilities (C,*block) of a finished prediction as float32 (uint8 rescaled);
    picklable, so block tasks of a postprocessor read the store themselves."""

    def __init__(self, source: Any, scale: float) -> None:
        self.source = source
        self.scale = scale

    def __call__(self, index: Index) -> np.ndarray:
        src = self.source
        values = src[(slice(None), *index)] if len(src.shape) == 4 else src[index]
        return np.asarray(values, dtype=np.float32) * np.float32(self.scale)
