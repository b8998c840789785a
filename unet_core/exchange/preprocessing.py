"""The model's input transforms as bioimage.io preprocessing steps, and back to numbers.

Only the value transforms matter to a package (shape handling is the consumer's): ``Standardize``
is ``zero_mean_unit_variance`` (or ``fixed_zero_mean_unit_variance`` with a fixed mean/std),
``PercentileNormalizer`` is ``scale_range``, ``Normalize`` with a fixed range is ``scale_linear``
+ ``clip``; ``ToTensor`` (without ``normalize``) and ``Identity`` carry no value change. Anything
else is refused by name: a package must not silently compute something else than the model saw.

Documented approximations: bioimage.io divides by ``std + eps`` (eps 1e-6) where unet-core
divides by ``max(std, eps)``, and its statistics are over the whole input tensor — the same as
unet-core's ``global_normalization`` (the default for HDF5 test sets), not per-patch statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unet_core.errors import ExportError

#: bioimage.io's default eps of the normalising steps.
BIOIMAGEIO_EPS = 1e-6
#: Transforms that change no value of a float input tensor.
NEUTRAL = {"ToTensor", "Identity"}


@dataclass(frozen=True)
class Step:
    """One bioimage.io processing step: its id and keyword arguments."""

    id: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def map_transforms(
    transforms: Sequence[Mapping[str, Any]], spatial_axes: Sequence[str]
) -> list[Step]:
    """The bioimage.io steps equivalent to ``transforms``; ExportError for one with none."""
    steps: list[Step] = []
    for index, spec in enumerate(transforms):
        steps.extend(_map_one(dict(spec), index, list(spatial_axes)))
    return steps


def _map_one(spec: dict[str, Any], index: int, spatial: list[str]) -> list[Step]:
    name = spec.get("name")
    if name in NEUTRAL and not spec.get("normalize", False):
        return []
    if name == "Standardize":
        axes = spatial if spec.get("channelwise") else None
        if spec.get("mean") is not None:
            kw = {"mean": float(spec["mean"]), "std": float(spec["std"]), "eps": BIOIMAGEIO_EPS}
            return [Step("fixed_zero_mean_unit_variance", kw)]
        return [Step("zero_mean_unit_variance", _axes({"eps": BIOIMAGEIO_EPS}, axes))]
    if name == "PercentileNormalizer":
        kw = {
            "min_percentile": float(spec.get("pmin", 1.0)),
            "max_percentile": float(spec.get("pmax", 99.6)),
            "eps": BIOIMAGEIO_EPS,
        }
        return [Step("scale_range", _axes(kw, spatial if spec.get("channelwise") else None))]
    if name == "Normalize" and spec.get("min_value") is not None:
        lo, hi = float(spec["min_value"]), float(spec["max_value"])
        span = hi - lo + float(spec.get("eps", 1e-10))
        if spec.get("norm01"):
            return [Step("scale_linear", {"gain": 1 / span, "offset": -lo / span}), _clip(0, 1)]
        gain = 2 / span
        return [Step("scale_linear", {"gain": gain, "offset": -1 - lo * gain}), _clip(-1, 1)]
    raise ExportError(
        f"loaders.test.transformer.raw[{index}] ({name}) has no bioimage.io preprocessing "
        "equivalent, and a package that left it out would feed the network other values than "
        "it was trained on. Export with a config whose test transforms are Standardize, "
        "PercentileNormalizer or Normalize with min_value/max_value (+ ToTensor), e.g. "
        "--config FILE, or export TorchScript/ONNX and normalise yourself."
    )


def _axes(kwargs: dict[str, Any], axes: list[str] | None) -> dict[str, Any]:
    return {**kwargs, "axes": axes} if axes is not None else kwargs


def _clip(lo: float, hi: float) -> Step:
    return Step("clip", {"min": lo, "max": hi})


def apply_steps(
    steps: Sequence[Step], x: np.ndarray, *, dtype: type[np.floating[Any]] = np.float32
) -> np.ndarray:
    """``x`` (batch, channel, *spatial) through ``steps`` as bioimage.io defines them
    (computed in float64, returned as ``dtype``)."""
    out = np.asarray(x).astype(np.float64)
    for step in steps:
        out = _apply(step, out)
    return out.astype(dtype, copy=False)


def _apply(step: Step, x: np.ndarray) -> np.ndarray:
    kw = step.kwargs
    reduce = (0, *range(2, x.ndim)) if kw.get("axes") else None
    if step.id == "zero_mean_unit_variance":
        mean = np.mean(x, axis=reduce, keepdims=True)
        return (x - mean) / (np.std(x, axis=reduce, keepdims=True) + kw["eps"])  # type: ignore[no-any-return]
    if step.id == "fixed_zero_mean_unit_variance":
        return (x - kw["mean"]) / (kw["std"] + kw["eps"])  # type: ignore[no-any-return]
    if step.id == "scale_range":
        q = [kw["min_percentile"], kw["max_percentile"]]
        lo, hi = np.percentile(x, q, axis=reduce, keepdims=True)
        return (x - lo) / (hi - lo + kw["eps"])  # type: ignore[no-any-return]
    if step.id == "scale_linear":
        return x * kw["gain"] + kw["offset"]  # type: ignore[no-any-return]
    if step.id == "clip":
        return np.clip(x, kw.get("min"), kw.get("max"))  # type: ignore[no-any-return]
    if step.id == "binarize":
        return (x > kw["threshold"]).astype(np.float64)  # type: ignore[no-any-return]
    if step.id == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))  # type: ignore[no-any-return]
    raise ValueError(f"unknown step {step.id}")
