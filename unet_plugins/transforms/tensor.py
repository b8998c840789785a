"""The last step of a pipeline: numpy -> torch, plus the no-op transform."""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_plugins.transforms.base import Transform, check_ndim
from unet_plugins.transforms.configs import ToTensorConfig, to_numpy_dtype


class ToTensor(Transform):
    """numpy -> ``torch.Tensor`` of ``dtype``; ``expand_dims`` adds a channel axis to 3D input."""

    Config = ToTensorConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        self.np_dtype = to_numpy_dtype(config.dtype)

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        import torch

        arr = check_ndim(array, "ToTensor")
        if self.config.expand_dims and arr.ndim == 3:
            arr = arr[None]
        if self.config.normalize:
            low, high = float(arr.min()), float(arr.max())
            arr = (arr - low) / (high - low + 1e-10)
        return torch.from_numpy(_contiguous(arr, self.np_dtype))


class LabelToTensor(Transform):
    """numpy label -> int64 ``torch.Tensor`` (any shape)."""

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        import torch

        return torch.from_numpy(_contiguous(np.asarray(array), np.int64))


class Identity(Transform):
    """Returns its input unchanged."""

    def __call__(self, array: Any, rng: np.random.Generator) -> Any:
        return array


def _contiguous(arr: np.ndarray, dtype: Any) -> np.ndarray:
    """C-contiguous with no negative stride: numpy calls a flipped size-1 axis contiguous,
    torch.from_numpy refuses it (a RandomFlip of a singleton-z 2D patch makes one)."""
    out = np.ascontiguousarray(arr, dtype=dtype)
    return out.copy() if any(st < 0 for st in out.strides) else out
