"""A package's pre/postprocessing as :class:`Step` s that unet-core applies, or one refusal.

bioimage.io packages state how their input is normalised and how their output is finished
(spec 0.4: ``name`` + ``kwargs`` with ``mode``; 0.5: ``id`` + ``kwargs`` with ``axes``). Both
are read into the 0.5 ids with scalar kwargs. Statistics (``zero_mean_unit_variance``,
``scale_range``) are over the whole input — bioimage.io's "sample"; "dataset" statistics
(0.4 ``mode: per_dataset``, or ``batch`` among the 0.5 axes) are taken over the input file,
which is the same for one file and the documented approximation for several. What cannot be
applied exactly is refused here, never dropped: per-channel values or statistics of a
multi-channel tensor, statistics over part of the spatial axes (e.g. per slice), a reference
tensor, and steps unet-core does not know.

:func:`resolve_statistics` turns the statistics steps into fixed ones for one input volume
(block-wise, with :func:`unet_core.io.stats.compute_stats`), so every patch of that volume gets
the same numbers, as bioimage.io computes them on the whole sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from unet_core.errors import ModelPackageError
from unet_core.exchange.preprocessing import BIOIMAGEIO_EPS, Step, apply_steps

#: Steps whose numbers are in their kwargs: applied voxel by voxel, the same on every patch.
ELEMENTWISE = {"fixed_zero_mean_unit_variance", "scale_linear", "clip", "binarize", "sigmoid"}
#: Steps that need statistics of the whole input first (preprocessing only).
STATISTICAL = {"zero_mean_unit_variance", "scale_range"}
#: Output steps over the channels of each voxel (postprocessing only).
PER_VOXEL = {"softmax"}
#: Steps that change no value unet-core writes (outputs are float32 anyway).
IGNORED = {"ensure_dtype"}

_AXIS_NAMES = {"b": "batch", "c": "channel", "i": "index", "t": "time"}


def package_steps(package: Any, role: str) -> list[Step]:
    """The steps of the package's ``inputs`` (``role='pre'``) or ``outputs`` (``'post'``)."""
    io_key, field = ("inputs", "preprocessing") if role == "pre" else ("outputs", "postprocessing")
    tensor = (package.rdf.get(io_key) or [{}])[0]
    steps = []
    for index, raw in enumerate(tensor.get(field) or []):
        where = f"{io_key}[0].{field}[{index}]"
        step = _read(raw, where, package.location, tensor)
        if step is None:
            continue
        allowed = ELEMENTWISE | (STATISTICAL if role == "pre" else PER_VOXEL)
        if step.id not in allowed:
            _refuse(
                package.location,
                where,
                step.id,
                "which needs statistics of the whole output (unet-core writes the output patch "
                "by patch)"
                if step.id in STATISTICAL
                else "which is not an input step",
            )
        steps.append(step)
    return steps


def _read(raw: Any, where: str, location: Any, tensor: dict[str, Any]) -> Step | None:
    if not isinstance(raw, dict):
        _refuse(location, where, repr(raw), "which is not a {id, kwargs} mapping")
    name = str(raw.get("id") or raw.get("name"))
    kwargs = dict(raw.get("kwargs") or {})
    if name in IGNORED:
        return None
    if name == "scale_mean_variance" or kwargs.get("reference_tensor") not in (None, ""):
        _refuse(location, where, name, "whose statistics come from another tensor")
    if name == "zero_mean_unit_variance" and kwargs.get("mode") == "fixed":  # spec 0.4
        name = "fixed_zero_mean_unit_variance"
    eps = float(kwargs.get("eps", BIOIMAGEIO_EPS))
    if name == "fixed_zero_mean_unit_variance":
        mean = _scalar(kwargs.get("mean"), location, where, name)
        std = _scalar(kwargs.get("std"), location, where, name)
        return Step(name, {"mean": mean, "std": std, "eps": eps})
    if name in STATISTICAL:
        _check_axes(kwargs, location, where, name, tensor)
        if name == "zero_mean_unit_variance":
            return Step(name, {"eps": eps})
        lo = float(kwargs.get("min_percentile", 0.0))
        hi = float(kwargs.get("max_percentile", 100.0))
        return Step(name, {"min_percentile": lo, "max_percentile": hi, "eps": eps})
    if name == "scale_linear":
        gain = _scalar(kwargs.get("gain", 1.0), location, where, name)
        offset = _scalar(kwargs.get("offset", 0.0), location, where, name)
        return Step(name, {"gain": gain, "offset": offset})
    if name == "clip":
        if "min_percentile" in kwargs or "max_percentile" in kwargs:
            _refuse(location, where, name, "with percentiles (only fixed min/max are applied)")
        bounds = {k: kwargs[k] for k in ("min", "max") if kwargs.get(k) is not None}
        if not bounds:
            _refuse(location, where, name, "without min or max")
        return Step(name, {k: _scalar(v, location, where, name) for k, v in bounds.items()})
    if name == "binarize":
        return Step(name, {"threshold": _scalar(kwargs.get("threshold"), location, where, name)})
    if name == "sigmoid":
        return Step(name, {})
    if name == "softmax":
        axis = str(kwargs.get("axis", "channel"))
        if _AXIS_NAMES.get(axis, axis) != "channel":
            _refuse(location, where, name, f"over axis {axis!r} (only over channels)")
        return Step(name, {})
    _refuse(location, where, name, "which unet-core does not know")
    return None  # unreachable


def _scalar(value: Any, location: Any, where: str, name: str) -> float:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list):
        _refuse(location, where, name, "with one value per channel or position")
    if value is None:
        _refuse(location, where, name, "without its required value")
    return float(value)


def _check_axes(
    kwargs: dict[str, Any], location: Any, where: str, name: str, tensor: dict[str, Any]
) -> None:
    """Statistics must be over all spatial axes; per channel only where there is one channel."""
    axes = kwargs.get("axes")
    if axes is None:
        return
    ids = {_AXIS_NAMES.get(str(a), str(a)) for a in axes}  # 0.4 "zyx" string or 0.5 list
    if _channel_count(tensor) > 1 and "channel" not in ids:
        _refuse(location, where, name, f"with statistics per channel (axes {list(axes)})")
    if not _spatial_ids(tensor) <= ids:
        _refuse(location, where, name, f"with statistics over axes {list(axes)} only")


def _spatial_ids(tensor: dict[str, Any]) -> set[str]:
    axes = tensor.get("axes") or []
    if isinstance(axes, str):
        return {a for a in axes if a in "zyx"}
    return {str(a.get("id")) for a in axes if isinstance(a, dict) and a.get("type") == "space"}


def _channel_count(tensor: dict[str, Any]) -> int:
    axes = tensor.get("axes")
    if isinstance(axes, list):
        for axis in axes:
            if isinstance(axis, dict) and axis.get("type") == "channel":
                return len(axis.get("channel_names") or []) or 1
    shape = tensor.get("shape")
    if isinstance(axes, str) and "c" in axes:
        c = axes.index("c")
        if isinstance(shape, list):
            return int(shape[c])
        if isinstance(shape, dict) and isinstance(shape.get("min"), list):
            return int(shape["min"][c])
    return 1


def _refuse(location: Any, where: str, name: str, why: str) -> None:
    raise ModelPackageError(
        f"The model package {str(location)!r} asks for {where}: {name}, {why}; unet-core "
        "cannot apply it exactly, and predicting without it would feed or write other values "
        "than the package's authors intended. Run this package with bioimageio.core, or edit "
        "its rdf.yaml to steps unet-core applies (zero_mean_unit_variance, "
        "fixed_zero_mean_unit_variance, scale_range, scale_linear, clip, binarize, sigmoid, "
        "softmax; see docs/sharing-models.md)."
    )


class _Stepped:
    """A volume seen through fixed steps, block by block (what compute_stats reads)."""

    dtype = np.dtype(np.float64)

    def __init__(self, volume: Any, steps: Sequence[Step]) -> None:
        self.volume, self.steps = volume, list(steps)

    def blocks(self) -> Iterator[np.ndarray]:
        for block in self.volume.blocks():
            yield apply_steps(self.steps, np.asarray(block), dtype=np.float64)


def resolve_statistics(steps: Sequence[Step], volume: Any) -> list[Step]:
    """``steps`` with every statistic computed over ``volume`` (anything with ``blocks()``
    and ``dtype``, e.g. a :class:`~unet_core.io.volume.Volume`): elementwise steps only."""
    from unet_core.io.stats import compute_stats

    fixed: list[Step] = []
    for step in steps:
        if step.id not in STATISTICAL:
            fixed.append(step)
            continue
        kw = step.kwargs
        seen = _Stepped(volume, fixed) if fixed else volume  # integer volumes: one fast pass
        if step.id == "zero_mean_unit_variance":
            stats = compute_stats(seen)
            mean, std = stats["mean"], stats["std"]
        else:
            q = (kw["min_percentile"], kw["max_percentile"])
            stats = compute_stats(seen, percentiles=q)
            mean, std = stats["pmin"], stats["pmax"] - stats["pmin"]
        # (x - mean) / (std + eps): scale_range's (x - lo) / (hi - lo + eps) is the same form
        step_kw = {"mean": float(mean), "std": float(std), "eps": kw["eps"]}
        fixed.append(Step("fixed_zero_mean_unit_variance", step_kw))
    return fixed
