"""Seeded watershed on a Dask cluster: block tasks with a halo of context, seeds numbered
over the whole volume, so objects cut by block faces keep one label.

1. seeds: one task per block reads the block with ``block_halo`` voxels of context on every
   side, finds the seed voxels as :class:`SeededWatershed` does on a whole volume and keeps
   those inside its block (a scratch zarr array);
2. seed ids: the seed voxels are labelled across the whole volume with the Dask connected
   components (connectivity 3, equal to labelling the whole seed mask at once): a seed cut by
   a block face is one seed, numbered in raster order of its first voxel like ``__call__``;
3. flooding: one task per block floods its block plus halo from the seed ids found there and
   keeps its block; with ``merge_threshold``, every block counts the boundary statistics of
   the contacts it owns (its block plus one plane on its high faces), the sums are
   agglomerated once for the whole volume; with ``min_size``, objects smaller than it are
   dropped and a second flooding from the kept objects fills their voxels (as ``__call__``
   does);
4. numbering: the ids left are numbered 1..n in increasing order and written.

The result equals the whole-volume watershed when every object touching a block lies,
with its seed, inside the block plus halo, and the distance transform, its smoothing and the
maxima filter see what they would see in the whole volume: ``block_halo`` larger than the
largest object's diameter plus ``min_distance`` and 4 ``sigma`` (in voxels). Smaller halos
give close results that differ near block faces where an object is larger than the halo.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unet_plugins.postprocessors.agglomeration import Contacts, merge_contacts
from unet_plugins.postprocessors.blockwise import Index, block_indices
from unet_plugins.postprocessors.dask_components import connected_components_dask


def _window(index: Index, shape: tuple[int, ...], halo: int) -> tuple[Index, Index]:
    """(block plus halo clipped to the volume, the block inside that window)."""
    outer = tuple(
        slice(max(0, s.start - halo), min(n, s.stop + halo)) for s, n in zip(index, shape)
    )
    inner = tuple(slice(s.start - o.start, s.stop - o.start) for s, o in zip(index, outer))
    return outer, inner


class _Task:
    """What every block task needs: the postprocessor, the prediction reader, the geometry."""

    def __init__(self, post: Any, read: Callable[[Index], np.ndarray], shape: tuple[int, ...]):
        self.post = post
        self.read = read
        self.shape = shape
        self.halo = int(post.config.block_halo)

    def seeds(self, index: Index, out: Any) -> None:
        outer, inner = _window(index, self.shape, self.halo)
        _, interior, _, distance = self.post.relief(self.read(outer))
        out[index] = (self.post.seed_labels(interior, distance)[inner] > 0).astype(np.uint8)

    def flood(self, index: Index, markers: Any, lut: Any, out: Any) -> tuple[np.ndarray, ...]:
        """Flood the window from ``lut[markers]`` (lut None: as they are), keep the block;
        returns (ids, voxel counts) of the labels in the block."""
        outer, inner = _window(index, self.shape, self.halo)
        mask, _, relief, _ = self.post.relief(self.read(outer))
        seeds = np.asarray(markers[outer]).astype(np.int64)
        if lut is not None:
            seeds = np.asarray(lut)[seeds]
        labels = self.post.flood(relief, seeds, mask)[inner]
        out[index] = labels
        ids, counts = np.unique(labels, return_counts=True)
        return ids[ids > 0], counts[ids > 0]

    def contacts(self, index: Index, labels: Any) -> Contacts:
        """The contacts whose first voxel lies in the block (read with one more plane on its
        high faces)."""
        window = tuple(slice(s.start, min(n, s.stop + 1)) for s, n in zip(index, self.shape))
        own = tuple(s.stop - s.start for s in index)
        return self.post.contacts(self.read(window), np.asarray(labels[window]), own)


def _positive(values: np.ndarray) -> np.ndarray:
    return np.asarray(values) > 0


class _Reader:
    """A picklable ``read(index)`` of a scratch array."""

    def __init__(self, array: Any) -> None:
        self.array = array

    def __call__(self, index: Index) -> np.ndarray:
        return np.asarray(self.array[index])


def seeded_watershed_dask(
    client: Any,
    post: Any,
    read: Callable[[Index], np.ndarray],
    shape: tuple[int, ...],
    block: tuple[int, ...],
    open_output: Callable[[int], Any],
    *,
    scratch_dir: str | None = None,
) -> int:
    """Labels of ``post`` (a SeededWatershed) over the prediction ``read`` gives, written
    through ``open_output(n)``'s writer; returns the object count n."""
    import zarr

    folder = Path(tempfile.mkdtemp(prefix=".watershed.", dir=scratch_dir))

    def scratch(name: str, dtype: Any) -> Any:
        return zarr.open_array(
            str(folder / name), mode="w", shape=shape, chunks=block, dtype=dtype, fill_value=0
        )

    def each_block(fn: Callable[..., Any], *args: Any) -> list[Any]:
        futures = [
            client.submit(fn, index, *args, pure=False, retries=3)
            for index in block_indices(shape, block)
        ]
        return list(client.gather(futures))

    try:
        task = client.scatter(_Task(post, read, shape), broadcast=True, hash=False)
        seed_mask = scratch("seed_mask", np.uint8)
        each_block(_call, task, "seeds", seed_mask)
        seed_ids = scratch("seed_ids", np.uint64)
        n_seeds = connected_components_dask(
            client,
            _positive,
            _Reader(seed_mask),
            shape,
            block,
            lambda n: seed_ids.__setitem__,
            connectivity=3,
            scratch_dir=str(folder),
        )
        labels = scratch("labels", np.uint64)
        sizes = _sizes(each_block(_call, task, "flood", seed_ids, None, labels), n_seeds)
        groups = np.arange(n_seeds + 1)  # seed id -> merged id
        if post.config.merge_threshold is not None:
            groups = post.merged(
                n_seeds, merge_contacts(each_block(_call, task, "contacts", labels))
            )
            sizes = np.bincount(groups, weights=sizes, minlength=n_seeds + 1).astype(np.int64)
        min_size = post.min_size.lowest  # edge objects cannot be told apart before merging
        if min_size > 1:
            keep = np.where(sizes >= min_size, np.arange(sizes.size), 0)
            keep[0] = 0
            if post.config.small_objects == "drop":
                sizes = np.where(keep > 0, sizes, 0)  # renumbered to background below
            else:
                lut = client.scatter(keep[groups], broadcast=True)
                again = scratch("labels_kept", np.uint64)
                sizes = _sizes(each_block(_call, task, "flood", labels, lut, again), n_seeds)
                labels, groups = again, np.arange(n_seeds + 1)
        present = np.flatnonzero(sizes > 0)
        numbering = np.zeros(sizes.size, np.int64)
        numbering[present] = np.arange(1, present.size + 1)
        write = open_output(int(present.size))
        lut = client.scatter(numbering[groups], broadcast=True)
        each_block(_relabel_block, labels, write, lut)
        return int(present.size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _call(index: Index, task: _Task, method: str, *args: Any) -> Any:
    return getattr(task, method)(index, *args)


def _relabel_block(index: Index, source: Any, write: Any, lut: Any) -> None:
    write(index, np.asarray(lut)[np.asarray(source[index]).astype(np.int64)])


def _sizes(results: list[tuple[np.ndarray, ...]], n: int) -> np.ndarray:
    """Voxels per id 0..n summed over the blocks' (ids, counts)."""
    sizes = np.zeros(n + 1, np.int64)
    for ids, counts in results:
        np.add.at(sizes, ids.astype(np.int64), counts)
    return sizes
