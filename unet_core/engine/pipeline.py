"""Transform pipelines: a validated list of transforms driven by one per-sample seed.

The reference gave every transform its own ``RandomState`` seeded alike and relied on raw and
label lists consuming their streams identically; the streams were copied into every worker, so all
workers repeated one augmentation sequence. Here a pipeline derives a fresh generator per call
from the sample's seed and the transform's position: the k-th *spatial* transform (class
attribute ``spatial = True``) gets ``default_rng([seed, 0, k])`` and the k-th other transform
``default_rng([seed, 1, k])``. Raw, label and weight pipelines called with the same seed therefore
make identical geometric choices whatever intensity transforms sit between them, and a different
seed (drawn per sample from torch's RNG, which DataLoader seeds per worker and epoch) gives a
different augmentation.

Transforms are reached only through :mod:`unet_core.registry`; pipelines hold plain objects and
pickle, so they travel to ``spawn`` DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from unet_core import registry
from unet_core.contracts import declared
from unet_core.errors import ConfigError, PluginError

#: Generator stream ids: spatial transforms draw from stream 0, all others from stream 1.
SPATIAL_STREAM = 0
OTHER_STREAM = 1


def transform_rng(seed: int, spatial: bool, index: int) -> np.random.Generator:
    """The generator a pipeline hands to its ``index``-th spatial (or non-spatial) transform."""
    return np.random.default_rng([int(seed), SPATIAL_STREAM if spatial else OTHER_STREAM, index])


class Pipeline:
    """Transforms applied in order; ``pipeline(array, seed)`` is deterministic in ``seed``."""

    def __init__(self, transforms: Sequence[Any], names: Sequence[str] | None = None) -> None:
        self.transforms: list[Any] = list(transforms)
        self.names: list[str] = (
            list(names) if names is not None else [type(t).__name__ for t in self.transforms]
        )
        # (is_spatial, index within its stream) for each transform, fixed at construction.
        self._slots: list[tuple[bool, int]] = []
        counts = {True: 0, False: 0}
        for t in self.transforms:
            spatial = bool(declared("transforms", t, "spatial"))
            self._slots.append((spatial, counts[spatial]))
            counts[spatial] += 1

    def __call__(self, array: Any, seed: int) -> Any:
        if seed < 0:
            raise ValueError(f"Pipeline seed must be a non-negative integer, got {seed}")
        for transform, (spatial, index) in zip(self.transforms, self._slots):
            array = transform(array, transform_rng(seed, spatial, index))
        return array

    def __len__(self) -> int:
        return len(self.transforms)

    @property
    def num_spatial(self) -> int:
        """How many spatial transforms the pipeline holds (these must match across pipelines)."""
        return sum(1 for spatial, _ in self._slots if spatial)

    @property
    def spatial_names(self) -> list[str]:
        """Names of the spatial transforms in order (for sync checks between raw and label)."""
        return [n for n, (spatial, _) in zip(self.names, self._slots) if spatial]

    def __repr__(self) -> str:
        return f"Pipeline([{', '.join(self.names)}])"


def spatial_signature(pipeline: Pipeline) -> list[tuple[str, dict[str, Any]]]:
    """(name, geometry parameters) of each spatial transform, in order.

    A transform lists the parameters that decide its geometry in ``sync_keys`` (interpolation
    order and the like may differ between raw and label lists); without it only names count.
    """
    signature = []
    for name, transform in zip(pipeline.names, pipeline.transforms):
        if declared("transforms", transform, "spatial"):
            config = getattr(transform, "config", None)
            keys = declared("transforms", transform, "sync_keys") if config is not None else ()
            signature.append((name, {k: getattr(config, k) for k in keys}))
    return signature


def sync_problem(
    pipelines: Mapping[str, Pipeline | None], where: str = "transformer"
) -> str | None:
    """Why the given pipelines (e.g. raw, label, weight) would not stay aligned, or None.

    Aligned means the same spatial transforms in the same order with the same geometric
    parameters; anything else moves raw and label differently.
    """
    present = [(key, p) for key, p in pipelines.items() if p is not None]
    if len(present) < 2:
        return None
    first_key, first = present[0]
    expected = spatial_signature(first)
    for key, other in present[1:]:
        got = spatial_signature(other)
        if got != expected:
            return (
                f"{where}: the spatial transforms of {first_key!r} ({_describe(expected)}) and "
                f"{key!r} ({_describe(got)}) differ, so the {key} would no longer line up with "
                f"the {first_key} voxel for voxel. List the same spatial transforms (RandomFlip, "
                "RandomRotate90, RandomRotate, ElasticDeformation, CropToFixed, ...) in the same "
                "order with the same geometric parameters in every list."
            )
    return None


def _describe(signature: list[tuple[str, dict[str, Any]]]) -> str:
    parts = []
    for name, params in signature:
        args = ", ".join(f"{k}={v!r}" for k, v in params.items())
        parts.append(f"{name}({args})" if args else name)
    return "[" + ", ".join(parts) + "]" if parts else "none"


def build_pipeline(
    specs: Sequence[Mapping[str, Any] | str] | None,
    stats: Mapping[str, Any] | None = None,
    *,
    where: str = "transformer",
) -> Pipeline:
    """Validate and build each ``{name: X, ...}`` entry of ``specs`` through the registry.

    ``stats`` is the global-normalization dict (``mean``, ``std``, ``pmin``, ``pmax``) or None;
    every transform receives it as ``from_config(config, stats=stats)``. ``where`` is the config
    path of the list (e.g. ``loaders.train.transformer.raw``); errors name ``where[i]``.
    """
    stats_dict = dict(stats) if stats is not None else None
    transforms: list[Any] = []
    names: list[str] = []
    for i, spec in enumerate(specs or []):
        location = f"{where}[{i}]"
        try:
            name, config = registry.validate("transforms", spec)
            component = registry.get("transforms", name)
            transforms.append(_build(component, config, stats_dict))
        except ConfigError as exc:
            raise ConfigError(f"{location}: {exc.message}", hint=exc.hint) from None
        except PluginError as exc:
            raise PluginError(f"{location}: {exc.message}", hint=exc.hint) from None
        names.append(name)
    return Pipeline(transforms, names)


def _build(component: Any, config: Any, stats: dict[str, Any] | None) -> Any:
    """As ``registry.create`` builds it: ``from_config(config, stats=...)``, else the
    constructor with ``stats`` if it takes them."""
    return registry.build(component, config, stats=stats)
