"""The blending of overlapping patch predictions into a volume (the grid: unet_core.tiling).

Two modes: ``overwrite`` is the reference's (pytorch-3dunet >= 2023-04): each patch's centre is
written over whatever an earlier patch left, so the last patch covering a voxel wins.
``gaussian`` weights every patch by an importance map that falls off towards its borders
(sigma = patch/8, as MONAI and nnU-Net do) and divides by the summed weights, which removes
the seams that border effects leave at patch edges.

:class:`VolumeAccumulator` keeps the whole output in memory. :class:`BlockAccumulator` keeps
only the output blocks that some pending patch still touches and hands each block to a sink
(e.g. a chunked HDF5 dataset) as soon as its last patch is in; blocks beyond a memory budget
are spilled to a scratch file, so peak memory depends on patch, batch and block size, not
on the volume.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

from unet_core.tiling import Index, axis_starts, patch_grid, redundancy, stride_for_overlap

BlendMode = Literal["overwrite", "gaussian"]
#: Smallest gaussian weight: keeps every voxel of a patch in play (and no division by ~0).
GAUSSIAN_MIN_WEIGHT = 1e-4
#: sigma = patch extent * this (MONAI's sigma_scale, nnU-Net's 1/8).
GAUSSIAN_SIGMA_SCALE = 0.125


# -- importance maps ----------------------------------------------------------------------------
def gaussian_importance(
    shape: Sequence[int],
    sigma_scale: float = GAUSSIAN_SIGMA_SCALE,
    min_weight: float = GAUSSIAN_MIN_WEIGHT,
) -> np.ndarray:
    """Separable gaussian centred on the patch, max 1, clipped below at ``min_weight`` (> 0).

    A singleton axis (2D data stored as Z=1) gets weight 1.
    """
    weights = np.ones(tuple(int(s) for s in shape), dtype=np.float32)
    for axis, n in enumerate(shape):
        if n <= 1:
            continue
        sigma = n * sigma_scale
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        g = np.exp(-0.5 * (x / sigma) ** 2)
        view = [1] * len(shape)
        view[axis] = n
        weights *= (g / g.max()).astype(np.float32).reshape(view)
    np.maximum(weights, np.float32(min_weight), out=weights)
    return weights


class ImportanceMaps:
    """Cache of importance maps per patch shape (patches at the volume end may differ)."""

    def __init__(self, mode: BlendMode) -> None:
        if mode not in ("overwrite", "gaussian"):
            raise ValueError(f"unknown blending mode {mode!r}")
        self.mode = mode
        self._cache: dict[tuple[int, ...], np.ndarray] = {}

    def __call__(self, shape: Sequence[int]) -> np.ndarray:
        key = tuple(int(s) for s in shape)
        if key not in self._cache:
            self._cache[key] = gaussian_importance(key)
        return self._cache[key]


def _check_patch(pred: np.ndarray, index: Index) -> None:
    extent = tuple(s.stop - s.start for s in index)
    if pred.ndim != 1 + len(index) or tuple(pred.shape[1:]) != extent:
        raise ValueError(
            f"patch prediction of shape {pred.shape} does not fit index {index}: expected "
            f"(C, {', '.join(map(str, extent))})"
        )


# -- in memory ----------------------------------------------------------------------------------
class VolumeAccumulator:
    """The whole output in memory: ``add`` patches, then ``result()``."""

    def __init__(self, channels: int, volume_shape: Sequence[int], mode: BlendMode) -> None:
        self.mode = mode
        self.maps = ImportanceMaps(mode)
        self.values = np.zeros((channels, *volume_shape), dtype=np.float32)
        self.weights = (
            np.zeros(tuple(volume_shape), dtype=np.float32) if mode == "gaussian" else None
        )

    def add(self, pred: np.ndarray, index: Index) -> None:
        """Blend one patch prediction (C, *patch) into the output region ``index``."""
        _check_patch(pred, index)
        region = (slice(None), *index)
        if self.weights is None:
            self.values[region] = pred
            return
        w = self.maps(pred.shape[1:])
        self.values[region] += pred * w
        self.weights[index] += w

    def result(self) -> np.ndarray:
        """The blended volume (C, Z, Y, X); voxels no patch covered stay 0."""
        if self.weights is not None:
            normalize(self.values, self.weights)
            self.weights = None
        return self.values


def normalize(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Divide the weighted sums by the summed weights in place (0 where nothing landed)."""
    np.divide(values, weights, out=values, where=weights > 0)  # no gather/scatter copies
    return values


# -- streaming ----------------------------------------------------------------------------------
Block = tuple[int, ...]
Sink = Callable[[Index, np.ndarray], None]


class BlockAccumulator:
    """Blend patches into output blocks and flush each block once no pending patch touches it.

    ``indices`` lists every patch region that will be added (any order of adding works for
    ``gaussian``; ``overwrite`` must add in the reference's order). ``sink(block_index,
    values)`` receives each finished block (C, *block) exactly once. At most
    ``max_open_blocks`` blocks stay in memory; older unfinished ones go to a scratch HDF5 file
    in ``scratch_dir`` and come back when touched again.
    """

    def __init__(
        self,
        indices: Sequence[Index],
        channels: int,
        volume_shape: Sequence[int],
        block_shape: Sequence[int],
        mode: BlendMode,
        sink: Sink,
        *,
        max_open_blocks: int | None = None,
        scratch_dir: str | None = None,
    ) -> None:
        self.channels = channels
        self.volume_shape = tuple(int(v) for v in volume_shape)
        self.block_shape = tuple(min(int(b), v) for b, v in zip(block_shape, self.volume_shape))
        self.mode = mode
        self.maps = ImportanceMaps(mode)
        self.sink = sink
        self.max_open_blocks = max_open_blocks
        self.scratch_dir = scratch_dir
        self.pending: dict[Block, int] = {}
        for index in indices:
            for block in self.blocks_touching(index):
                self.pending[block] = self.pending.get(block, 0) + 1
        self.open: OrderedDict[Block, tuple[np.ndarray, np.ndarray | None]] = OrderedDict()
        self.spilled: set[Block] = set()
        self._scratch: Any = None
        self._scratch_path: str | None = None
        self.peak_open_blocks = 0
        self.spills = 0

    # geometry
    def blocks_touching(self, index: Index) -> Iterator[Block]:
        ranges = [
            range(s.start // b, (s.stop - 1) // b + 1)
            for s, b in zip(index, self.block_shape)
            if s.stop > s.start
        ]
        return itertools.product(*ranges) if len(ranges) == len(index) else iter(())

    def block_index(self, block: Block) -> Index:
        return tuple(
            slice(i * b, min((i + 1) * b, v))
            for i, b, v in zip(block, self.block_shape, self.volume_shape)
        )

    @property
    def block_nbytes(self) -> int:
        per_voxel = 4 * (self.channels + (1 if self.mode == "gaussian" else 0))
        return per_voxel * int(np.prod(self.block_shape))

    # adding
    def add(self, pred: np.ndarray, index: Index) -> None:
        """Blend one patch (C, *patch) into every block it touches; flush finished blocks."""
        _check_patch(pred, index)
        w = self.maps(pred.shape[1:]) if self.mode == "gaussian" else None
        for block in list(self.blocks_touching(index)):
            if self.pending.get(block, 0) <= 0:
                raise ValueError(f"patch {index} was not announced to the accumulator")
            bidx = self.block_index(block)
            inter = tuple(
                slice(max(s.start, b.start), min(s.stop, b.stop)) for s, b in zip(index, bidx)
            )
            in_patch = tuple(
                slice(i.start - s.start, i.stop - s.start) for i, s in zip(inter, index)
            )
            in_block = tuple(
                slice(i.start - b.start, i.stop - b.start) for i, b in zip(inter, bidx)
            )
            values, weights = self._get(block)
            if w is None:
                values[(slice(None), *in_block)] = pred[(slice(None), *in_patch)]
            else:
                wp = w[in_patch]
                values[(slice(None), *in_block)] += pred[(slice(None), *in_patch)] * wp
                assert weights is not None
                weights[in_block] += wp
            self.pending[block] -= 1
            if self.pending[block] == 0:
                self._flush(block)
            self._evict()

    def _get(self, block: Block) -> tuple[np.ndarray, np.ndarray | None]:
        if block in self.open:
            self.open.move_to_end(block)
            return self.open[block]
        shape = tuple(s.stop - s.start for s in self.block_index(block))
        if block in self.spilled:
            values, weights = self._read_scratch(block)
            self.spilled.discard(block)
        else:
            values = np.zeros((self.channels, *shape), dtype=np.float32)
            weights = np.zeros(shape, dtype=np.float32) if self.mode == "gaussian" else None
        self.open[block] = (values, weights)
        self.peak_open_blocks = max(self.peak_open_blocks, len(self.open))
        return values, weights

    def _flush(self, block: Block) -> None:
        values, weights = self.open.pop(block)
        del self.pending[block]
        if weights is not None:
            normalize(values, weights)
        self.sink(self.block_index(block), values)

    def _evict(self) -> None:
        if self.max_open_blocks is None:
            return
        while len(self.open) > max(1, self.max_open_blocks):
            block, (values, weights) = self.open.popitem(last=False)
            self._write_scratch(block, values, weights)
            self.spilled.add(block)
            self.spills += 1

    # scratch file for spilled blocks (uncompressed: it is read back soon)
    def _scratch_file(self) -> Any:
        if self._scratch is None:
            import h5py

            from unet_core.io.scratch import temp_file

            folder = self.scratch_dir or tempfile.gettempdir()
            path = str(temp_file(folder, "blocks", "scratch", ".h5"))
            self._scratch_path = path
            # no chunk cache: a full disk fails the write, not HDF5's close (see open_h5)
            self._scratch = h5py.File(path, "w", rdcc_nbytes=0)
            chunks = (1, *self.block_shape)
            self._scratch.create_dataset(
                "values",
                shape=(self.channels, *self.volume_shape),
                dtype="float32",
                chunks=chunks,
            )
            if self.mode == "gaussian":
                self._scratch.create_dataset(
                    "weights", shape=self.volume_shape, dtype="float32", chunks=self.block_shape
                )
        return self._scratch

    def _write_scratch(self, block: Block, values: np.ndarray, weights: np.ndarray | None) -> None:
        f = self._scratch_file()
        bidx = self.block_index(block)
        f["values"][(slice(None), *bidx)] = values
        if weights is not None:
            f["weights"][bidx] = weights

    def _read_scratch(self, block: Block) -> tuple[np.ndarray, np.ndarray | None]:
        f = self._scratch_file()
        bidx = self.block_index(block)
        values = f["values"][(slice(None), *bidx)]
        weights = f["weights"][bidx] if self.mode == "gaussian" else None
        return values, weights

    def close(self, check: bool = True) -> None:
        """Check that every announced patch arrived; remove the scratch file."""
        try:
            if check and self.pending:
                raise RuntimeError(
                    f"{len(self.pending)} output blocks never received all their patches"
                )
        finally:
            if self._scratch is not None:
                self._scratch.close()
                self._scratch = None
            if self._scratch_path is not None and os.path.exists(self._scratch_path):
                os.unlink(self._scratch_path)
            self._scratch_path = None


__all__ = [
    "BlockAccumulator",
    "ImportanceMaps",
    "Index",
    "VolumeAccumulator",
    "axis_starts",
    "gaussian_importance",
    "normalize",
    "patch_grid",
    "redundancy",
    "stride_for_overlap",
]
