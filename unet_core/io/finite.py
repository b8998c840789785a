"""Finding non-finite voxels (NaN, +inf, -inf) in input volumes, and what to do with them.

One NaN voxel spreads: per-patch standardisation turns the whole patch into NaN, and so does
the first convolution. So inputs are checked where they are read, and the default is to
refuse them with the count and the first positions; ``loaders.nonfinite: fill`` replaces them
by ``loaders.nonfinite_fill`` instead. Integer data is always finite and never scanned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from unet_core.errors import DataError

#: How many positions of non-finite voxels a report names.
MAX_POSITIONS = 3
POLICY_KEY = "loaders.nonfinite"
FILL_KEY = "loaders.nonfinite_fill"


def can_hold_nonfinite(dtype: Any) -> bool:
    """Only floating-point data can hold NaN or inf."""
    return np.dtype(dtype).kind in "fc"


@dataclass(frozen=True)
class NonFinitePolicy:
    """``error`` (refuse, the default) or ``fill`` (replace by ``fill``) for non-finite voxels."""

    mode: Literal["error", "fill"] = "error"
    fill: float = 0.0

    @classmethod
    def of(cls, loaders: Any) -> NonFinitePolicy:
        """The policy of a ``loaders`` section (defaults when it has none)."""
        if getattr(loaders, "nonfinite", "error") == "fill":
            return cls("fill", float(getattr(loaders, "nonfinite_fill", 0.0)))
        return cls()


@dataclass
class NonFiniteCount:
    """NaN / +inf / -inf counts of an array scanned piece by piece, with the first positions."""

    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    first: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.nan + self.posinf + self.neginf

    def add(self, block: np.ndarray, offset: tuple[int, ...] | None = None) -> None:
        """Count the non-finite voxels of ``block``, which starts at ``offset`` in the whole."""
        if not can_hold_nonfinite(block.dtype):
            return
        bad = ~np.isfinite(block)
        if not bad.any():
            return
        nan = np.isnan(block)
        n_nan = int(np.count_nonzero(nan))
        n_pos = int(np.count_nonzero(block == np.inf))
        self.nan += n_nan
        self.posinf += n_pos
        self.neginf += int(np.count_nonzero(bad)) - n_nan - n_pos
        if len(self.first) < MAX_POSITIONS:
            start = offset or (0,) * block.ndim
            for pos in np.argwhere(bad)[: MAX_POSITIONS - len(self.first)]:
                self.first.append(tuple(int(p) + int(o) for p, o in zip(pos, start)))

    def describe(self) -> str:
        """``3 non-finite voxels (2 NaN, 1 +inf), the first at (0, 4, 5), (0, 4, 6)``."""
        parts = [
            f"{n} {name}"
            for n, name in ((self.nan, "NaN"), (self.posinf, "+inf"), (self.neginf, "-inf"))
            if n
        ]
        where = ", ".join(str(p) for p in sorted(self.first))
        noun = "voxel" if self.total == 1 else "voxels"
        return f"{self.total} non-finite {noun} ({', '.join(parts)}), the first at {where}"


def nonfinite_error(count: NonFiniteCount, what: str, layout: str = "(C,)Z,Y,X") -> DataError:
    """The one paragraph that refuses non-finite input."""
    return DataError(
        f"The input {what} holds {count.describe()} in {layout} order. Non-finite values spread: "
        "normalisation and the network turn a whole patch into NaN. Fix the data, or set "
        f"{POLICY_KEY}: fill to replace them by {FILL_KEY} (default 0.0) when training and "
        "predicting."
    )


def apply_policy(
    array: np.ndarray,
    policy: NonFinitePolicy,
    what: str,
    offset: tuple[int, ...] | None = None,
) -> np.ndarray:
    """``array`` if finite; else a DataError (``error``) or a filled copy (``fill``)."""
    if not can_hold_nonfinite(array.dtype) or np.isfinite(array).all():
        return array
    if policy.mode == "fill":
        out = np.array(array, copy=True)
        out[~np.isfinite(out)] = policy.fill
        return out
    count = NonFiniteCount()
    count.add(array, offset)
    raise nonfinite_error(count, what)


def _starts(index: Any, ndim: int) -> tuple[int, ...]:
    """Where a block read with ``index`` starts; a spatial-only index of a 4D volume: C = 0."""
    index = index if isinstance(index, tuple) else (index,)
    starts = [int(s.start or 0) if isinstance(s, slice) else 0 for s in index]
    if len(starts) < ndim:
        starts = [0] * (ndim - len(starts)) + starts
    return tuple(starts[:ndim])


class FiniteView:
    """A read-only volume whose every read is checked (and filled) under a policy.

    Wraps a :class:`~unet_core.io.volume.Volume` read patch by patch (lazy datasets, block
    statistics): the check costs one ``isfinite`` pass over what is read anyway.
    """

    def __init__(self, volume: Any, policy: NonFinitePolicy) -> None:
        self.volume = volume
        self.policy = policy
        self.shape: tuple[int, ...] = tuple(volume.shape)
        self.dtype = volume.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        block = np.asarray(self.volume[index])
        if not can_hold_nonfinite(block.dtype):
            return block
        what = getattr(self.volume, "what", "volume")
        return apply_policy(block, self.policy, what, _starts(index, block.ndim))

    def blocks(self) -> Iterator[np.ndarray]:
        for index in self.volume.block_indices():
            yield self[index]


def scan_volume(volume: Any, max_voxels: int | None = None) -> tuple[NonFiniteCount, float, float]:
    """Non-finite counts and the (min, max) of the finite values, block by block.

    The range is ``(nan, nan)`` when no value is finite.
    """
    count = NonFiniteCount()
    lo, hi = np.inf, -np.inf
    indices = volume.block_indices() if max_voxels is None else volume.block_indices(max_voxels)
    for index in indices:
        block = np.asarray(volume[index])
        if block.size == 0:
            continue
        count.add(block, _starts(index, block.ndim))
        finite = block[np.isfinite(block)] if can_hold_nonfinite(block.dtype) else block
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if lo > hi:
        return count, float("nan"), float("nan")
    return count, lo, hi
