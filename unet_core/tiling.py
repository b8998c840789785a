"""Where patches go: the reference's patch grid and the tiles ``fast`` prediction picks.

One implementation serves the slice builders, the predictors and :func:`unet_core.predict_array`:
on each axis starts go 0, stride, 2*stride, ... while start + patch <= size, plus one patch
flush with the end if the last one stops short (pytorch-3dunet's ``SliceBuilder``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

Index = tuple[slice, ...]

#: Fraction of a tile shared with its neighbour in ``fast`` mode (docs/prediction.md).
FAST_OVERLAP = 0.25
#: Tile edge per device kind for fast mode. On CPU, throughput per voxel falls for tiles much
#: above 64^3 (cache-bound convolutions; BENCHMARKS.md: one 112^3 tile is slower than eight
#: 64^3 ones); GPUs are kept busy by bigger tiles, limited by memory.
FAST_TILE = {"cpu": 64, "cuda": 128, "mps": 96}
FAST_TILE_2D = {"cpu": 256, "cuda": 512, "mps": 512}
FAST_BATCH = {"cpu": 2, "cuda": 4, "mps": 2}


def axis_starts(size: int, patch: int, stride: int) -> list[int]:
    """Starts along one axis: 0, stride, ... plus a last patch flush with the end."""
    if patch > size:
        raise ValueError(f"patch {patch} larger than axis {size}")
    starts = list(range(0, size - patch + 1, max(1, stride)))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def patch_grid(
    volume_shape: Sequence[int], patch_shape: Sequence[int], stride_shape: Sequence[int]
) -> list[Index]:
    """Spatial slices of every patch in raster order (z slowest)."""
    per_axis = [axis_starts(v, p, s) for v, p, s in zip(volume_shape, patch_shape, stride_shape)]
    return [
        tuple(slice(s, s + p) for s, p in zip(starts, patch_shape))
        for starts in itertools.product(*per_axis)
    ]


def stride_for_overlap(patch_shape: Sequence[int], overlap: float) -> tuple[int, ...]:
    """Stride that makes neighbouring patches share ``overlap`` of their extent."""
    return tuple(max(1, int(round(p * (1.0 - overlap)))) for p in patch_shape)


def fit_axis(size: int, max_tile: int, overlap: float) -> tuple[int, int]:
    """(tile, stride) along one axis: the fewest tiles of at most ``max_tile`` that overlap by
    at least ``overlap * max_tile``, shrunk evenly so that no voxel is computed needlessly.

    100 voxels with max 64 and overlap 0.25: two tiles of 58 (stride 42), not two of 64.
    """
    if size <= max_tile:
        return size, size
    min_overlap = math.ceil(max_tile * overlap)
    count = math.ceil((size - min_overlap) / max(1, max_tile - min_overlap))
    tile = min(max_tile, math.ceil((size + (count - 1) * min_overlap) / count))
    stride = math.ceil((size - tile) / (count - 1)) if count > 1 else tile
    return tile, max(1, stride)


def fit_tiles(
    volume_shape: Sequence[int], max_tile: Sequence[int], overlap: float
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Tile and stride (Z,Y,X) for a volume, axis by axis (see :func:`fit_axis`)."""
    (tz, sz), (ty, sy), (tx, sx) = (
        fit_axis(int(v), int(m), overlap) for v, m in zip(volume_shape[-3:], max_tile)
    )
    return (tz, ty, tx), (sz, sy, sx)


def fast_max_tile(device_type: str, volume_shape: Sequence[int]) -> tuple[int, int, int]:
    """The largest tile fast mode uses on this device; flat tiles for 2D data (Z == 1)."""
    if int(volume_shape[-3]) == 1:
        edge = FAST_TILE_2D.get(device_type, 256)
        return (1, edge, edge)
    edge = FAST_TILE.get(device_type, 64)
    return (edge, edge, edge)


def redundancy(indices: Sequence[Index], volume_shape: Sequence[int], halo: Sequence[int]) -> float:
    """Computed voxels (patches with halo) / volume voxels: the cost of overlap and halo."""
    computed = sum(
        math.prod((s.stop - s.start) + 2 * h for s, h in zip(idx, halo)) for idx in indices
    )
    return computed / float(math.prod(volume_shape))  # type: ignore[no-any-return]
