"""Connected components of a volume too large for memory, one block at a time.

Three passes over blocks (memory: a block plus one plane of the volume):

1. label each block's foreground on its own, numbering on from the previous block, into a
   scratch HDF5 dataset; keep each label's size and its first voxel in raster order;
2. join labels that touch across block faces: for every block boundary, compare the two
   planes on either side (with the diagonal neighbours that ``connectivity`` allows) and
   merge the touching pairs as a graph;
3. drop objects below ``min_size``, number the rest 1..n in raster order of their first voxel
   (as labelling the whole volume at once does), and write each block.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

Index = tuple[slice, ...]


def block_indices(shape: tuple[int, ...], block: tuple[int, ...]) -> Iterator[Index]:
    """The blocks tiling ``shape`` (the last ones cut at the border), in raster order."""
    starts = [range(0, n, b) for n, b in zip(shape, block)]
    for corner in itertools.product(*starts):
        yield tuple(slice(c, min(c + b, n)) for c, b, n in zip(corner, block, shape))


def _plane_offsets(connectivity: int) -> list[tuple[int, int]]:
    """In-plane shifts of the neighbours across a face: one step across, plus up to
    ``connectivity - 1`` diagonal steps."""
    return [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if 1 + abs(a) + abs(b) <= connectivity]


def _shifted(array: np.ndarray, shift: tuple[int, int], source: bool) -> np.ndarray:
    """The window of a plane that meets the other plane moved by ``shift``."""
    index = []
    for s, n in zip(shift, array.shape):
        if source:
            index.append(slice(max(0, -s), n - max(0, s)))
        else:
            index.append(slice(max(0, s), n + min(0, s)))
    return array[tuple(index)]


def _touching_pairs(before: np.ndarray, after: np.ndarray, connectivity: int) -> np.ndarray:
    """(k, 2) label pairs that touch across the face between two adjacent planes."""
    pairs = []
    for shift in _plane_offsets(connectivity):
        a = _shifted(before, shift, source=True)
        b = _shifted(after, shift, source=False)
        both = (a > 0) & (b > 0)
        if both.any():
            pairs.append(np.stack([a[both], b[both]], axis=1))
    if not pairs:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(pairs).astype(np.int64), axis=0)


def connected_components_blockwise(
    foreground: Callable[[Index], np.ndarray],
    shape: tuple[int, ...],
    block: tuple[int, ...],
    open_output: Callable[[int], Callable[[Index, np.ndarray], None]],
    *,
    connectivity: int = 1,
    min_size: int = 0,
    scratch_dir: str | os.PathLike[str] | None = None,
) -> int:
    """Label ``foreground(index) -> bool block`` over ``shape``; returns the object count n.

    ``open_output(n)`` is called once n is known (to pick a dtype) and returns the writer,
    ``write(index, labels)``, called once per block. The labels equal
    ``remove_small(skimage.measure.label(whole, connectivity), min_size)``.
    """
    import h5py

    from unet_core.io import temp_file
    from unet_core.prediction_api import raise_if_stopped
    from unet_plugins.postprocessors.block_labels import label_block, label_stats

    name = temp_file(scratch_dir or tempfile.gettempdir(), "labels", "scratch", ".h5")
    try:
        with h5py.File(name, "w", rdcc_nbytes=0) as scratch:
            chunks = tuple(min(b, n) for b, n in zip(block, shape))
            labels = scratch.create_dataset("labels", shape, dtype=np.uint64, chunks=chunks)
            sizes, firsts = [np.zeros(1, np.int64)], [np.zeros(1, np.int64)]
            total = 0
            for index in block_indices(shape, block):  # pass 1
                raise_if_stopped()
                local, n = label_block(foreground(index), connectivity)
                if n == 0:
                    continue
                size, first = label_stats(local, n, index, shape)
                sizes.append(size)
                firsts.append(first)
                numbered = local.astype(np.uint64)
                numbered[local > 0] += np.uint64(total)
                labels[index] = numbered
                total += n
            size, first = np.concatenate(sizes), np.concatenate(firsts)

            edges = [np.zeros((0, 2), np.int64)]  # pass 2
            for axis, step in enumerate(block):
                for cut in range(step, shape[axis], step):
                    before = labels[(slice(None),) * axis + (cut - 1,)]
                    after = labels[(slice(None),) * axis + (cut,)]
                    edges.append(_touching_pairs(before, after, connectivity))
            pairs = np.unique(np.concatenate(edges), axis=0)  # no duplicate edges to sum
            lut, kept = merged_numbering(pairs, size, first, total, min_size)  # pass 3
            write = open_output(kept)
            for index in block_indices(shape, block):
                raise_if_stopped()
                write(index, lut[labels[index]])
            return kept
    finally:
        Path(name).unlink(missing_ok=True)


def merged_numbering(
    pairs: np.ndarray, size: np.ndarray, first: np.ndarray, total: int, min_size: int
) -> tuple[np.ndarray, int]:
    """Block labels 1..total joined by the touching ``pairs`` into objects; objects smaller
    than ``min_size`` dropped, the others numbered 1..n in raster order of their first voxel
    (whole-volume labelling's order). Returns (lookup table from block label to object
    number, n); label 0 maps to 0. ``size``/``first`` are per block label, index 0 unused."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(len(pairs), np.int32), (pairs[:, 0], pairs[:, 1])),
        shape=(total + 1, total + 1),
    )
    _, component = connected_components(graph, directed=False)
    objects = component[1:]
    n_objects = int(objects.max(initial=-1)) + 1
    object_size = np.bincount(objects, weights=size[1:], minlength=n_objects)
    object_first = np.full(n_objects, np.iinfo(np.int64).max)
    np.minimum.at(object_first, objects, first[1:])
    kept = np.flatnonzero(object_size >= max(min_size, 1))
    number = np.zeros(n_objects, np.int64)
    number[kept[np.argsort(object_first[kept], kind="stable")]] = np.arange(1, kept.size + 1)
    return np.concatenate([[0], number[objects]]), int(kept.size)
