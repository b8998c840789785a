"""The last step of a pipeline: numpy -> torch, plus the no-op transform."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from unet_plugins.transforms.base import Transform, TransformConfig, check_ndim

#: Torch-style names whose numpy meaning differs by platform or from torch; pinned here.
DTYPE_ALIASES = {"long": "int64", "int64": "int64", "half": "float16"}


def _to_numpy_dtype(name: str) -> np.dtype:
    return np.dtype(DTYPE_ALIASES.get(name, name))


class ToTensor(Transform):
    """numpy -> ``torch.Tensor`` of ``dtype``; ``expand_dims`` adds a channel axis to 3D input."""

    class Config(TransformConfig):
        expand_dims: bool = Field(
            ..., description="Add a leading channel axis when the input is 3D (Z,Y,X)."
        )
        dtype: str = Field(
            "float32",
            description="numpy dtype name of the tensor, e.g. float32, int64 ('long' is int64 "
            "on every platform).",
        )
        normalize: bool = Field(False, description="Min-max scale to [0, 1] first.")

        @field_validator("dtype")
        @classmethod
        def _dtype(cls, v: str) -> str:
            try:
                dtype = _to_numpy_dtype(v)
            except TypeError:
                raise ValueError(
                    f"dtype {v!r} is not a numpy dtype name; use e.g. float32, float16, int64"
                ) from None
            if dtype.kind not in "biuf":
                raise ValueError(f"dtype {v!r} cannot become a tensor; use a number type")
            return v

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        self.np_dtype = _to_numpy_dtype(config.dtype)

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        import torch

        arr = check_ndim(array, "ToTensor")
        if self.config.expand_dims and arr.ndim == 3:
            arr = arr[None]
        if self.config.normalize:
            low, high = float(arr.min()), float(arr.max())
            arr = (arr - low) / (high - low + 1e-10)
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=self.np_dtype))


class LabelToTensor(Transform):
    """numpy label -> int64 ``torch.Tensor`` (any shape)."""

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(np.asarray(array), dtype=np.int64))


class Identity(Transform):
    """Returns its input unchanged."""

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        return array
