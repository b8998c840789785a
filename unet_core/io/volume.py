"""Read-only volumes in the layouts the models expect, from any installed volume format.

A :class:`Volume` presents a stored array as ``(Z,Y,X)`` or ``(C,Z,Y,X)`` (a plain 2D ``(Y,X)``
image becomes ``(1,Y,X)``) and reads only what is indexed, so an ``h5py.Dataset`` behind it is
never loaded whole unless asked. Several stored arrays can be stacked as channels. A
:class:`Source` opens one input file read-only and hands out volumes by internal path.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from unet_core.errors import DataError
from unet_core.formats import VolumeInfo

log = logging.getLogger(__name__)

#: Voxels per block when a whole volume is scanned (statistics, checks): 32 MB as float64.
BLOCK_VOXELS = 4 * 1024**2

Index = tuple[slice, ...]


def _layout(shape: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Stored shape -> (Z,Y,X) or (C,Z,Y,X); DataError for anything else."""
    if len(shape) == 2:
        log.info("%s is a plain 2D image %s; using it as (1,Y,X).", what, shape)
        return (1, *shape)
    if len(shape) in (3, 4):
        return tuple(shape)
    raise DataError(
        f"{what} has shape {tuple(shape)} ({len(shape)} dimensions); expected (Z,Y,X) or "
        f"(C,Z,Y,X), 2D data as (1,Y,X) or (C,1,Y,X), or a plain (Y,X) image."
    )


class _Part:
    """One stored array (h5py dataset, memmap or ndarray) in (Z,Y,X)/(C,Z,Y,X) layout."""

    def __init__(self, data: Any, what: str) -> None:
        self.data = data
        self.what = what
        self.stored_ndim = len(data.shape)
        self.shape = _layout(tuple(data.shape), what)

    def read(self, index: Index) -> np.ndarray:
        """``index`` has one slice per dimension of :attr:`shape`."""
        if self.stored_ndim == 2:
            z = range(1)[index[0]]
            plane = np.asarray(self.data[index[1:]])
            return plane[None][: len(z)]
        return np.asarray(self.data[index])


class Volume:
    """Array-like, read-only ``(Z,Y,X)`` / ``(C,Z,Y,X)`` view; indexing reads from storage."""

    def __init__(self, parts: Sequence[Any], *, what: str, path: str) -> None:
        self.path = path
        self.what = what
        self._parts = [p if isinstance(p, _Part) else _Part(p, what) for p in parts]
        spatial = {p.shape[-3:] for p in self._parts}
        if len(spatial) > 1:
            raise DataError(
                f"The datasets stacked as {what} in {path} have different spatial shapes "
                f"{sorted(spatial)}; every listed dataset must have the same (Z,Y,X)."
            )
        dtypes = [np.dtype(p.data.dtype) for p in self._parts]
        self.dtype: np.dtype[Any] = np.result_type(*dtypes) if len(dtypes) > 1 else dtypes[0]
        if len(self._parts) == 1:
            self.shape: tuple[int, ...] = self._parts[0].shape
        else:
            channels = sum(p.shape[0] if len(p.shape) == 4 else 1 for p in self._parts)
            self.shape = (channels, *self._parts[0].shape[-3:])

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        z, y, x = self.shape[-3:]
        return (z, y, x)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __getitem__(self, index: Any) -> np.ndarray:
        index = self._full_index(index)
        if len(self._parts) == 1:
            return self._parts[0].read(index)
        channel, spatial = index[0], index[1:]
        blocks = []
        for part in self._parts:
            block = part.read(spatial if len(part.shape) == 3 else (slice(None), *spatial))
            blocks.append(block[None] if len(part.shape) == 3 else block)
        return np.concatenate(blocks, axis=0).astype(self.dtype, copy=False)[channel]  # type: ignore[no-any-return]

    def _full_index(self, index: Any) -> Index:
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index):
            pos = index.index(Ellipsis)
            fill = (slice(None),) * (self.ndim - len(index) + 1)
            index = index[:pos] + fill + index[pos + 1 :]
        if len(index) == self.ndim - 1 and self.ndim == 4:
            index = (slice(None), *index)  # spatial-only index on a 4D volume: all channels
        if len(index) < self.ndim:
            index = index + (slice(None),) * (self.ndim - len(index))
        if len(index) != self.ndim or not all(isinstance(i, slice) for i in index):
            raise TypeError(f"Volume indices must be {self.ndim} slices, got {index!r}")
        return tuple(index)

    def read(self) -> np.ndarray:
        """The whole volume in memory."""
        return self[(slice(None),) * self.ndim]

    def blocks(self, max_voxels: int = BLOCK_VOXELS) -> Iterator[np.ndarray]:
        """The whole volume as tiles of about ``max_voxels`` (per channel for 4D).

        Tiles are aligned to the HDF5 chunks, so each chunk is read and decompressed once.
        """
        for index in self.block_indices(max_voxels):
            yield self[index]

    def block_indices(self, max_voxels: int = BLOCK_VOXELS) -> Iterator[Index]:
        """The indices :meth:`blocks` reads, for scans that need to know where a block lies."""
        shape = self.spatial_shape
        tile = list(self._chunks())
        for axis in (2, 1, 0):  # grow x, then y, then z, in whole chunks
            others = int(np.prod(tile)) // tile[axis]
            fit = max(tile[axis], (max_voxels // others) // tile[axis] * tile[axis])
            tile[axis] = min(shape[axis], fit)
        channels = range(self.shape[0]) if self.ndim == 4 else [None]
        for c in channels:
            for z0 in range(0, shape[0], tile[0]):
                for y0 in range(0, shape[1], tile[1]):
                    for x0 in range(0, shape[2], tile[2]):
                        spatial = tuple(
                            slice(o, min(n, o + t)) for o, n, t in zip((z0, y0, x0), shape, tile)
                        )
                        yield spatial if c is None else (slice(c, c + 1), *spatial)

    def _chunks(self) -> tuple[int, int, int]:
        """The storage chunk (Z,Y,X) of the first stored array, (1,1,1) if not chunked."""
        part = self._parts[0]
        chunks = getattr(part.data, "chunks", None)
        if not chunks:
            return (1, 1, 1)
        spatial = (1, *chunks) if part.stored_ndim == 2 else tuple(chunks[-3:])
        z, y, x = (min(c, n) for c, n in zip(spatial, self.spatial_shape))
        return (z, y, x)


def reflect_indices(start: int, stop: int, size: int) -> np.ndarray:
    """Indices ``start..stop-1`` mirrored into ``[0, size)`` like ``np.pad(mode='reflect')``."""
    idx = np.arange(start, stop)
    if size == 1:
        return np.zeros_like(idx)
    period = 2 * (size - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= size, period - idx, idx)


def read_padded(volume: Any, spatial: Index, halo: Sequence[int]) -> np.ndarray:
    """``volume[spatial]`` grown by ``halo`` on each side, mirrored only beyond the border.

    Equals ``np.pad(volume, halo, mode='reflect')`` cropped to the grown window, but reads
    only the window, so nothing is ever written back and memory stays at one padded patch.
    """
    shape = tuple(volume.shape[-3:])
    lead = (slice(None),) * (len(volume.shape) - 3)
    window: list[slice] = []
    picks: list[np.ndarray | None] = []
    inside = True
    for s, h, n in zip(spatial, halo, shape):
        start, stop = (s.start or 0) - h, (n if s.stop is None else s.stop) + h
        if start >= 0 and stop <= n:
            window.append(slice(start, stop))
            picks.append(None)
            continue
        inside = False
        idx = reflect_indices(start, stop, n)
        lo, hi = int(idx.min()), int(idx.max()) + 1
        window.append(slice(lo, hi))
        picks.append(idx - lo)
    block = np.asarray(volume[(*lead, *window)])
    if inside:
        return block
    for axis, pick in enumerate(picks):
        if pick is not None:
            block = np.take(block, pick, axis=len(lead) + axis)
    return block


class Source:
    """One input opened read-only through the volume format that claims it.

    ``volume(name)`` returns a :class:`Volume`. For HDF5 ``name`` is an internal dataset path;
    single-array formats (TIFF) read the primary name (``raw_name``) from the file itself and
    any other name from a sibling file (:func:`unet_core.io.paths.tiff_sibling`).
    ``in_memory`` reads the arrays whole; otherwise they stay lazy (memory-mapped TIFF,
    h5py dataset).
    """

    def __init__(self, path: str, *, raw_name: str = "raw", key: str = "file_paths") -> None:
        from unet_core import formats

        self.path = str(path)
        self.raw_name = raw_name
        self.key = key
        if formats.scheme_of(self.path) is None and not os.path.exists(self.path):
            raise DataError(
                f"The input file {self.path} ({key}) does not exist. Fix the path in {key}."
            )
        self.format = formats.for_path(self.path, key=key)
        self._reader: Any = self.format.open(self.path, primary=raw_name, key=key)

    @property
    def single_array(self) -> bool:
        """One array per file: other names are sibling files."""
        return bool(self.format.single_array)

    def volume(self, names: str | Sequence[str], *, key: str, in_memory: bool = False) -> Volume:
        """The array(s) ``names`` (a list is stacked as channels) as one Volume."""
        names = [names] if isinstance(names, str) else list(names)
        if not names:
            raise DataError(f"{key} is an empty list; give at least one dataset name.")
        what = f"{key} {names[0]!r}" if len(names) == 1 else f"{key} {names}"
        parts = [self._reader.array(name, key=key, in_memory=in_memory) for name in names]
        where = self.location(names[0], key=key) if len(names) == 1 else self.path
        return Volume(parts, what=f"{what} of {where}", path=where)

    def location(self, name: str, *, key: str) -> str:
        """The file that holds ``name``: this input, or for a single-array format (TIFF) the
        sibling file of a name other than the primary one."""
        if not self.single_array or name == self.raw_name:
            return self.path
        from unet_core.io.paths import tiff_sibling

        return tiff_sibling(self.path, name, self.raw_name, key=key)

    def info(self, name: str) -> VolumeInfo:
        """Voxel size and axes of ``name`` (empty where the format cannot say)."""
        try:
            info: VolumeInfo = self._reader.info(name)
        except Exception:  # noqa: BLE001 - metadata is a courtesy, never a reason to fail
            return VolumeInfo()
        return info

    def names(self) -> list[str]:
        """What the input holds (for messages)."""
        return list(self._reader.names())

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
