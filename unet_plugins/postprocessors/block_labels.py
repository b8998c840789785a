"""The per-block work of the block-wise connected components: label one block and find
each label's size and first voxel in the whole volume's raster order.

Labelling uses cc3d (connected-components-3d) where it is installed: 2.5-4.5x faster than
scipy.ndimage.label on a 128^3 block of the connected components (6- and 26-connectivity,
measured by ``benchmarks/distributed.py``); both number labels in raster order of their
first voxel, which makes the first voxels one O(N) pass instead of a per-label minimum.
"""

from __future__ import annotations

import numpy as np

Index = tuple[slice, ...]

#: cc3d's neighbour counts for connectivity 1..ndim (faces, +edges, +corners).
_CC3D = {3: {1: 6, 2: 18, 3: 26}, 2: {1: 4, 2: 8}}


def label_block(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    """(labels 1..n of the connected components of ``mask``, n), numbered in raster order."""
    neighbours = _CC3D.get(mask.ndim, {}).get(connectivity)
    if neighbours is not None:
        try:
            import cc3d
        except ImportError:
            pass
        else:
            labels, n = cc3d.connected_components(
                np.ascontiguousarray(mask), connectivity=neighbours, return_N=True
            )
            return labels, int(n)
    from scipy import ndimage as ndi

    structure = ndi.generate_binary_structure(mask.ndim, connectivity)
    labels, n = ndi.label(mask, structure=structure)
    return labels, int(n)


def global_raster_index(index: Index, shape: tuple[int, ...]) -> np.ndarray:
    """Each voxel's position in the whole volume's raster order, for one block."""
    grids = np.ix_(*[np.arange(s.start, s.stop, dtype=np.int64) for s in index])
    strides = np.cumprod((1, *shape[:0:-1]))[::-1]
    return sum(g * int(st) for g, st in zip(grids, strides))  # type: ignore[return-value]


def label_stats(
    labels: np.ndarray, n: int, index: Index, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(voxels, first voxel in the volume's raster order) of labels 1..n of one block."""
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=n + 1)[1:].astype(np.int64)
    # labels numbered in raster order: each first voxel is where the running maximum grows
    grows = np.flatnonzero(np.diff(np.maximum.accumulate(flat), prepend=0) > 0)
    if grows.size == n:
        local = np.stack(np.unravel_index(grows, labels.shape), axis=1)
        starts = np.array([s.start for s in index], dtype=np.int64)
        strides = np.cumprod((1, *shape[:0:-1]))[::-1].astype(np.int64)
        return sizes, (local + starts) @ strides
    from scipy import ndimage as ndi

    raster = global_raster_index(index, shape)
    return sizes, np.asarray(ndi.minimum(raster, labels, np.arange(1, n + 1)), dtype=np.int64)
