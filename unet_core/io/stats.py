"""Global normalization statistics of a volume, computed block by block.

The values are those of the reference's ``calculate_stats`` on the whole array (``mean``,
``std``, ``pmin`` = 1st percentile, ``pmax`` = 99.6th percentile, numpy's linear
interpolation), but the volume is never held in memory. 8/16-bit integer volumes (most
microscopy) need one pass: everything follows from the value counts. Other dtypes: mean/std
are merged per block (Chan et al.), and percentiles are exact order statistics from histogram
refinement plus a final partition of the few candidate values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

PMIN, PMAX = 1.0, 99.6
_BINS = 4096
_COLLECT_LIMIT = 4_000_000

Blocks = Callable[[], Iterator[np.ndarray]]


def compute_stats(volume: Any, percentiles: Sequence[float] = (PMIN, PMAX)) -> dict[str, float]:
    """``{"mean", "std", "pmin", "pmax"}`` of ``volume`` (a Volume or an ndarray)."""
    blocks: Blocks
    if isinstance(volume, np.ndarray):
        array = volume
        blocks = lambda: iter([array])  # noqa: E731
    else:
        blocks = volume.blocks
    dtype = np.dtype(volume.dtype)
    if _small_int(dtype):  # one pass: every statistic follows from the value counts
        counts, offset = _counts(blocks, dtype)
        return _stats_from_counts(counts, offset, percentiles)
    n, mean, m2, lo, hi = _moments(blocks())
    if n == 0:
        raise ValueError("cannot compute statistics of an empty volume")
    std = math.sqrt(m2 / n)
    pmin, pmax = percentile_values(blocks, n, lo, hi, percentiles)
    return {"mean": mean, "std": std, "pmin": pmin, "pmax": pmax}


def _counts(blocks: Blocks, dtype: np.dtype[Any]) -> tuple[np.ndarray, int]:
    if dtype.kind == "b":
        offset, length = 0, 2
    else:
        info = np.iinfo(dtype)
        offset, length = -int(info.min), int(info.max) - int(info.min) + 1
    counts = np.zeros(length, dtype=np.int64)
    for block in blocks():
        flat = block.ravel()
        counts += np.bincount(flat.astype(np.int64) + offset if offset else flat, minlength=length)
    return counts, offset


def _stats_from_counts(
    counts: np.ndarray, offset: int, percentiles: Sequence[float]
) -> dict[str, float]:
    n = int(counts.sum())
    if n == 0:
        raise ValueError("cannot compute statistics of an empty volume")
    values = np.arange(len(counts), dtype=np.float64) - offset
    mean = float(np.dot(values, counts) / n)
    std = math.sqrt(float(np.dot(np.square(values - mean), counts)) / n)
    cum = np.cumsum(counts)
    out = []
    for q in percentiles:
        pos = q / 100.0 * (n - 1)
        k = int(math.floor(pos))
        a, b = (
            float(np.searchsorted(cum, r, side="right") - offset) for r in (k, min(k + 1, n - 1))
        )
        out.append(a + (b - a) * (pos - k) if pos > k else a)
    return {"mean": mean, "std": std, "pmin": out[0], "pmax": out[1]}


def _moments(blocks: Iterable[np.ndarray]) -> tuple[int, float, float, float, float]:
    n, mean, m2 = 0, 0.0, 0.0
    lo, hi = math.inf, -math.inf
    for block in blocks:
        b = np.asarray(block, dtype=np.float64).ravel()
        if b.size == 0:
            continue
        bn, bmean = b.size, float(b.mean())
        bm2 = float(np.square(b - bmean).sum())
        delta = bmean - mean
        total = n + bn
        mean += delta * bn / total
        m2 += bm2 + delta * delta * n * bn / total
        n = total
        lo, hi = min(lo, float(b.min())), max(hi, float(b.max()))
    return n, mean, m2, lo, hi


def percentile_values(
    blocks: Blocks, n: int, lo: float, hi: float, percentiles: Sequence[float]
) -> list[float]:
    """``np.percentile(whole, q)`` for each q, from the blocks (any dtype)."""
    wanted: list[tuple[int, int, float]] = []
    for q in percentiles:
        pos = q / 100.0 * (n - 1)
        k = int(math.floor(pos))
        wanted.append((k, min(k + 1, n - 1), pos - k))
    ranks = sorted({r for k, k1, _ in wanted for r in (k, k1)})
    values = _ranks_by_refinement(blocks, ranks, lo, hi)
    out = []
    for k, k1, frac in wanted:
        a, b = values[k], values[k1]
        out.append(a + (b - a) * frac if frac else a)
    return out


def _small_int(dtype: np.dtype[Any]) -> bool:
    return (dtype.kind in "ui" and dtype.itemsize <= 2) or dtype.kind == "b"


def _ranks_by_refinement(
    blocks: Blocks, ranks: list[int], lo: float, hi: float
) -> dict[int, float]:
    """Narrow a value range around each rank with histograms, then partition what is left."""
    # per rank: [low, high] bracket (values in [low, high]), count of values below low
    state = {r: [lo, hi, 0] for r in ranks}
    values: dict[int, float] = {}
    while True:
        pending = [r for r in ranks if r not in values]
        for r in pending:
            low, high, _ = state[r]
            if low == high:
                values[r] = low
        pending = [r for r in ranks if r not in values]
        if not pending:
            return values
        hists = {r: np.zeros(_BINS, dtype=np.int64) for r in pending}
        below = dict.fromkeys(pending, 0)
        for block in blocks():
            b = np.asarray(block, dtype=np.float64).ravel()
            for r in pending:
                low, high, _ = state[r]
                hists[r] += np.histogram(b, bins=_BINS, range=(low, high))[0]
                below[r] += int(np.count_nonzero(b < low))
        collect = []
        for r in pending:
            low, high, _ = state[r]
            cum = np.cumsum(hists[r]) + below[r]
            i = int(np.searchsorted(cum, r, side="right"))
            edges = np.linspace(low, high, _BINS + 1)
            inside = int(hists[r][i])
            new_low = float(edges[i])
            new_high = float(high if i == _BINS - 1 else np.nextafter(edges[i + 1], -np.inf))
            if new_high < new_low:  # range down to a few ulps: keep the bracket, partition it
                collect.append(r)
                continue
            state[r] = [new_low, new_high, int(cum[i] - inside)]
            if inside <= _COLLECT_LIMIT:
                collect.append(r)
        if collect:
            _collect(blocks, collect, state, values)


def _collect(
    blocks: Blocks, ranks: list[int], state: dict[int, list[Any]], values: dict[int, float]
) -> None:
    picked: dict[int, list[np.ndarray]] = {r: [] for r in ranks}
    for block in blocks():
        b = np.asarray(block, dtype=np.float64).ravel()
        for r in ranks:
            low, high, _ = state[r]
            picked[r].append(b[(b >= low) & (b <= high)])
    for r in ranks:
        candidates = np.concatenate(picked[r])
        k = r - int(state[r][2])
        values[r] = float(np.partition(candidates, k)[k])
