"""What every built-in transform shares: its config, how it is built, how it walks channels.

A transform is ``transform(array, rng)``. Random choices come only from ``rng``, which the
pipeline (:mod:`unet_core.engine.pipeline`) derives from the per-sample seed, so a transform
holds no random state and pickles as plain data. Arrays are (Z,Y,X) or (C,Z,Y,X); 2D data has a
singleton Z. Spatial transforms draw their parameters once per call and apply them to every
channel, so a 4D raw stays aligned with a 3D label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from unet_core import interfaces
from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig
from unet_plugins.transforms.configs import (  # noqa: F401 - re-exported
    FloatRange,
    NoParametersConfig,
    TransformConfig,
    probability_field,
)


class Transform(interfaces.Transform):
    """Base class (the transform contract): ``Config`` validates the parameters, ``apply`` does
    the work."""

    #: True for random geometric transforms that must make the same choice on raw/label/weight.
    spatial: ClassVar[bool] = False
    #: For spatial transforms: the parameters that decide the geometry, which must be equal in
    #: the raw, label and weight lists for them to stay aligned (see ``sync_problem``).
    sync_keys: ClassVar[tuple[str, ...]] = ()

    Config = NoParametersConfig

    def __init__(
        self,
        config: ComponentConfig | None = None,
        /,
        *,
        stats: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> None:
        if config is None:
            config = self.Config(**params)
        elif params:
            raise TypeError("pass either a Config or keyword parameters, not both")
        self.config: Any = config
        self.setup(config, dict(stats) if stats else {})

    @classmethod
    def from_config(
        cls, config: ComponentConfig, stats: Mapping[str, Any] | None = None
    ) -> Transform:
        """Build from a validated ``Config`` and the global-normalization ``stats`` (or None)."""
        return cls(config, stats=stats)

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        """Hook for subclasses: precompute what ``__call__`` needs (stats may be empty)."""

    def __getattr__(self, name: str) -> Any:
        # Parameters read as attributes (``t.angle_spectrum``), like the reference's objects.
        if name != "config" and "config" in self.__dict__:
            config = self.__dict__["config"]
            if name in type(config).model_fields:
                return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"


# -- helpers -----------------------------------------------------------------------------------


def check_ndim(array: Any, who: str, allowed: tuple[int, ...] = (3, 4)) -> np.ndarray:
    """``array`` as ndarray, or DataError if its rank is not in ``allowed``."""
    arr = np.asarray(array)
    if arr.ndim not in allowed:
        layouts = {3: "(Z,Y,X)", 4: "(C,Z,Y,X)", 2: "(Y,X)"}
        expected = " or ".join(layouts.get(n, f"{n}D") for n in allowed)
        raise DataError(
            f"{who} got an array of shape {arr.shape} ({arr.ndim}D); expected {expected}. "
            "Store 2D images with a singleton z as (1,Y,X) or (C,1,Y,X)."
        )
    return arr


def spatial_shape(array: np.ndarray) -> tuple[int, int, int]:
    """The (Z,Y,X) shape of a 3D or 4D array."""
    z, y, x = array.shape[-3:]
    return int(z), int(y), int(x)


def per_channel(array: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` on a (Z,Y,X) array, or on each channel of a (C,Z,Y,X) array (restacked)."""
    if array.ndim == 3:
        return fn(array)
    return np.stack([fn(channel) for channel in array], axis=0)


def as_label_volume(array: Any, who: str) -> np.ndarray:
    """A (Z,Y,X) label; a single-channel (1,Z,Y,X) label is squeezed, other 4D is an error."""
    arr = np.asarray(array)
    if arr.ndim == 4 and arr.shape[0] == 1:
        return arr[0]
    if arr.ndim != 3:
        raise DataError(
            f"{who} converts an instance/semantic label volume and needs (Z,Y,X) or (1,Z,Y,X), "
            f"got shape {arr.shape}. Put label conversions before any transform that adds "
            "channels, and store one label volume per file."
        )
    return arr


def float_dtype(array: np.ndarray) -> np.dtype:
    """The dtype intensity results keep: the input's float type, float32 for anything else."""
    return array.dtype if array.dtype.kind == "f" else np.dtype(np.float32)


def execute(rng: np.random.Generator, probability: float) -> bool:
    """One uniform draw: True with ``probability`` (always consumes exactly one number)."""
    return bool(rng.random() < probability)
