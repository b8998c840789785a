"""Deterministic intensity normalizations.

``stats`` (from ``global_normalization``: ``mean``, ``std``, ``pmin``, ``pmax`` of the whole raw
volume, or None) are used by :class:`Standardize` (mean/std) and :class:`PercentileNormalizer`
(the 1st/99.6th percentile *values*) unless the entry sets its own ``mean``/``std`` or
``pmin``/``pmax``: the entry's keys win, as in the reference. Statistics are computed in float64;
results are float32 for integer input and keep a float input's dtype.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_plugins.transforms.base import Transform, float_dtype
from unet_plugins.transforms.configs import (
    NormalizeConfig,
    PercentileNormalizerConfig,
    StandardizeConfig,
)


def _reduce_axes(arr: np.ndarray, channelwise: bool) -> tuple[int, ...] | None:
    """Axes to reduce over: per channel for channelwise 4D input, else everything."""
    return tuple(range(1, arr.ndim)) if channelwise and arr.ndim == 4 else None


def _stat(stats: dict[str, Any], key: str) -> float | None:
    value = stats.get(key)
    return None if value is None else float(value)


class Standardize(Transform):
    """``(x - mean) / max(std, eps)``: global stats if given, else the patch's own.

    ``channelwise`` standardizes each channel of a (C,Z,Y,X) array separately; on a 3D array it is
    the whole volume (the reference normalized each Z-slice instead).
    """

    Config = StandardizeConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        if config.mean is not None:
            self.fixed: tuple[float, float] | None = (config.mean, config.std)
        elif _stat(stats, "mean") is not None and _stat(stats, "std") is not None:
            self.fixed = (float(stats["mean"]), float(stats["std"]))
        else:
            self.fixed = None

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = np.asarray(array)
        dtype = float_dtype(arr)
        if self.fixed is not None:
            mean, std = self.fixed
            return ((arr - mean) / max(std, self.config.eps)).astype(dtype, copy=False)
        axes = _reduce_axes(arr, self.config.channelwise)
        mean_a = np.mean(arr, axis=axes, dtype=np.float64, keepdims=True)
        std_a = np.std(arr, axis=axes, dtype=np.float64, keepdims=True)
        return ((arr - mean_a) / np.maximum(std_a, self.config.eps)).astype(dtype, copy=False)


class PercentileNormalizer(Transform):
    """``(x - lo) / (hi - lo + eps)`` with lo, hi the ``pmin``/``pmax`` percentiles; no clipping.

    With ``global_normalization`` and no explicit ``pmin``/``pmax``, lo and hi are the whole
    volume's 1st/99.6th percentile values from the stats (the reference misused those values as
    percentiles). Explicit ``pmin``/``pmax`` are percentiles of each patch.
    """

    Config = PercentileNormalizerConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        explicit = {"pmin", "pmax"} & config.model_fields_set
        lo, hi = _stat(stats, "pmin"), _stat(stats, "pmax")
        self.values: tuple[float, float] | None = (
            (lo, hi) if not explicit and lo is not None and hi is not None else None
        )

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = np.asarray(array)
        dtype = float_dtype(arr)
        cfg = self.config
        if self.values is not None:
            lo, hi = self.values
            return ((arr - lo) / (hi - lo + cfg.eps)).astype(dtype, copy=False)
        axes = _reduce_axes(arr, cfg.channelwise)
        lo_a, hi_a = np.percentile(arr, [cfg.pmin, cfg.pmax], axis=axes, keepdims=True)
        return ((arr - lo_a) / (hi_a - lo_a + cfg.eps)).astype(dtype, copy=False)


class Normalize(Transform):
    """Min-max scaling to [-1, 1] (or [0, 1] with ``norm01``), clipped.

    ``min_value``/``max_value`` fix the range (values outside are clipped); left out, the patch's
    own min/max are used.
    """

    Config = NormalizeConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = np.asarray(array)
        dtype = float_dtype(arr)
        cfg = self.config
        lo = float(arr.min()) if cfg.min_value is None else cfg.min_value
        hi = float(arr.max()) if cfg.max_value is None else cfg.max_value
        unit = (arr.astype(dtype, copy=False) - lo) / (hi - lo + cfg.eps)
        if cfg.norm01:
            return np.clip(unit, 0, 1).astype(dtype, copy=False)
        return np.clip(2 * unit - 1, -1, 1).astype(dtype, copy=False)
