"""Connected components on a Dask cluster: the three passes of
:mod:`unet_plugins.postprocessors.blockwise` as tasks, with the same result.

1. one task per block labels its foreground and stores the labels in a scratch zarr array as
   ids unique over the volume without coordination (``block number * block voxels + local``),
   returning each label's size and first voxel in raster order;
2. one task per block face compares the planes on either side of it, widened by one voxel in
   the plane so that diagonal neighbours across block edges are seen, and returns the
   touching id pairs; the client merges them as a graph and numbers the objects kept by
   ``min_size`` in raster order of their first voxel (as labelling the whole volume does);
3. one task per block writes its final labels into the output (chunk-aligned: no locks).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from unet_plugins.postprocessors.block_labels import label_block, label_stats
from unet_plugins.postprocessors.blockwise import (
    Index,
    _touching_pairs,
    block_indices,
    merged_numbering,
)


def _label(
    foreground: Callable[[Any], np.ndarray],
    read: Callable[[Index], np.ndarray],
    scratch: Any,
    index: Index,
    number: int,
    block_voxels: int,
    shape: tuple[int, ...],
    connectivity: int,
) -> tuple[int, np.ndarray, np.ndarray]:
    local, n = label_block(foreground(read(index)), connectivity)
    ids = local.astype(np.uint64)
    ids[local > 0] += np.uint64(number * block_voxels)
    scratch[index] = ids
    if n == 0:
        return 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
    sizes, firsts = label_stats(local, n, index, shape)
    return n, sizes, firsts


def _face(scratch: Any, window: Index, axis: int, connectivity: int) -> np.ndarray:
    """Pairs of ids touching across the face at ``window[axis].start + 1``."""
    planes = np.asarray(scratch[window]).astype(np.int64)
    before = np.take(planes, 0, axis=axis)
    after = np.take(planes, 1, axis=axis)
    return _touching_pairs(before, after, connectivity)


def _relabel(
    scratch: Any, write: Any, index: Index, number: int, block_voxels: int, offset: int, lut: Any
) -> None:
    ids = np.asarray(scratch[index]).astype(np.int64)
    compact = np.where(ids > 0, ids - number * block_voxels + offset, 0)
    write(index, np.asarray(lut)[compact])


def _faces(shape: tuple[int, ...], block: tuple[int, ...]) -> list[tuple[Index, int]]:
    """(two-plane window widened by one voxel in the plane, axis) of every block face."""
    faces = []
    for index in block_indices(shape, block):
        for axis, s in enumerate(index):
            if s.start == 0:
                continue
            window = tuple(
                slice(s.start - 1, s.start + 1)
                if a == axis
                else slice(max(0, o.start - 1), min(shape[a], o.stop + 1))
                for a, o in enumerate(index)
            )
            faces.append((window, axis))
    return faces


def connected_components_dask(
    client: Any,
    foreground: Callable[[Any], np.ndarray],
    read: Callable[[Index], np.ndarray],
    shape: tuple[int, ...],
    block: tuple[int, ...],
    open_output: Callable[[int], Any],
    *,
    connectivity: int = 1,
    min_size: int = 0,
    scratch_dir: str | None = None,
) -> int:
    """Like :func:`connected_components_blockwise`, on Dask; ``read``, ``foreground`` and
    the writer ``open_output(n)`` returns must pickle. Returns the object count."""
    import zarr

    folder = tempfile.mkdtemp(prefix=".labels.", suffix=".zarr", dir=scratch_dir)
    try:
        scratch = zarr.open_array(
            folder, mode="w", shape=shape, chunks=block, dtype=np.uint64, fill_value=0
        )
        blocks = list(block_indices(shape, block))
        block_voxels = math.prod(block) + 1  # > any local label: ids split back exactly
        labelled = client.gather(
            [
                client.submit(
                    _label,
                    foreground,
                    read,
                    scratch,
                    index,
                    i,
                    block_voxels,
                    shape,
                    connectivity,
                    pure=False,
                    retries=3,
                )
                for i, index in enumerate(blocks)
            ]
        )
        counts = np.array([n for n, _, _ in labelled], dtype=np.int64)
        offsets = np.concatenate([[1], 1 + np.cumsum(counts)[:-1]])  # compact ids start at 1
        total = int(counts.sum())
        size = np.concatenate([np.zeros(1, np.int64), *[s for _, s, _ in labelled]])
        first = np.concatenate([np.zeros(1, np.int64), *[f for _, _, f in labelled]])

        pairs = client.gather(
            [
                client.submit(_face, scratch, window, axis, connectivity, pure=False, retries=3)
                for window, axis in _faces(shape, block)
            ]
        )
        edges = np.unique(np.concatenate([np.zeros((0, 2), np.int64), *pairs]), axis=0)
        numbers, local = np.divmod(edges, block_voxels)
        compact = offsets[numbers] + local - 1 if edges.size else edges
        table, kept = merged_numbering(compact, size, first, total, min_size)
        lut = client.scatter(table, broadcast=True)
        write = open_output(kept)
        client.gather(
            [
                client.submit(
                    _relabel,
                    scratch,
                    write,
                    index,
                    i,
                    block_voxels,
                    int(offsets[i]) - 1,
                    lut,
                    pure=False,
                    retries=3,
                )
                for i, index in enumerate(blocks)
            ]
        )
        return kept
    finally:
        shutil.rmtree(folder, ignore_errors=True)
