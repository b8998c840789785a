"""One region of a lazily read volume, read once and then served from memory.

A Dask block task forwards every patch touching its block; read patch by patch, each input
chunk under the block is decompressed (or fetched from object storage) once per patch that
overlaps it, several times over. Reading the block with its halo in one piece and slicing the
patches out of memory reads every chunk once per block.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from unet_core.tiling import Index


def halo_box(indices: Sequence[Index], halo: Sequence[int], shape: Sequence[int]) -> Index:
    """The smallest (Z,Y,X) box inside a volume of ``shape`` holding every spatial index grown
    by ``halo`` (what :func:`~unet_core.io.volume.read_padded` reads for them, mirrored
    borders included)."""
    if not indices:
        raise ValueError("halo_box needs at least one index")
    box = []
    for axis, (h, n) in enumerate(zip(halo, shape)):
        starts = [(index[axis].start or 0) - h for index in indices]
        stops = [(n if index[axis].stop is None else index[axis].stop) + h for index in indices]
        box.append(slice(max(0, min(starts)), min(int(n), max(stops))))
    return tuple(box)


class RegionCache:
    """A read-only array-like over ``volume`` ((C,)Z,Y,X) that reads the spatial ``box`` on
    first use and answers every read inside it from memory; reads reaching outside the box go
    to ``volume``. Reads are returned read-only (callers copy before modifying)."""

    def __init__(self, volume: Any, box: Index) -> None:
        self.volume = volume
        self.box = tuple(box)
        self.shape: tuple[int, ...] = tuple(volume.shape)
        self.dtype = volume.dtype
        self.ndim = len(self.shape)
        self._data: np.ndarray | None = None
        #: Reads sent to ``volume`` (the region itself counts as one).
        self.reads = 0

    def __getitem__(self, index: Any) -> np.ndarray:
        local = self._local(index)
        if local is None:
            self.reads += 1
            return np.asarray(self.volume[index])
        if self._data is None:
            lead = (slice(None),) * (self.ndim - 3)
            self._data = np.asarray(self.volume[(*lead, *self.box)])
            self._data.setflags(write=False)
            self.reads += 1
        return self._data[local]

    def _local(self, index: Any) -> tuple[slice, ...] | None:
        """``index`` in the region's coordinates, or None if it is not a plain box inside it."""
        if not isinstance(index, tuple) or len(index) != self.ndim:
            return None
        lead, spatial = index[: self.ndim - 3], index[self.ndim - 3 :]
        if any(s != slice(None) for s in lead):
            return None
        local = []
        for s, b, n in zip(spatial, self.box, self.shape[-3:]):
            if not isinstance(s, slice) or s.step not in (None, 1):
                return None
            start, stop = s.start or 0, n if s.stop is None else s.stop
            if start < b.start or stop > b.stop or start < 0:
                return None
            local.append(slice(start - b.start, stop - b.start))
        return (*lead, *local)
