"""Helpers for the prediction tests: volumes, checkpoints, configs, tiny test-only models."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from pydantic import Field

from unet_core.interfaces import ComponentConfig

TINY_UNET = {
    "name": "UNet3D",
    "in_channels": 1,
    "out_channels": 2,
    "f_maps": 4,
    "num_levels": 2,
    "num_groups": 2,
    "final_sigmoid": False,
}


def write_volume(path: Path, raw: np.ndarray, **extra: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=raw, chunks=True)
        for name, data in extra.items():
            f.create_dataset(name, data=data)
    return path


def save_weights(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"model_state_dict": model.state_dict(), "num_iterations": 1}, path)
    return path


def tiny_unet(seed: int = 0, **overrides: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    from unet_core import registry

    spec = {**TINY_UNET, **overrides}
    torch.manual_seed(seed)
    return registry.create("models", spec), spec


def config(
    model_spec: dict[str, Any],
    model_path: Path,
    files: list[Path],
    out_dir: Path,
    *,
    patch=(8, 16, 16),
    stride=(5, 12, 12),
    halo=(2, 4, 4),
    predictor: dict[str, Any] | None = None,
    dataset: str = "StandardHDF5Dataset",
    raw_transforms: list[dict[str, Any]] | None = None,
    **top: Any,
) -> dict[str, Any]:
    """A test config in the reference's layout (dict)."""
    transforms = (
        raw_transforms
        if raw_transforms is not None
        else [
            {"name": "Standardize"},
            {"name": "ToTensor", "expand_dims": True},
        ]
    )
    return {
        "model_path": str(model_path),
        "model": copy.deepcopy(model_spec),
        "predictor": predictor or {"name": "StandardPredictor"},
        "device": "cpu",
        "loaders": {
            "dataset": dataset,
            "output_dir": str(out_dir),
            "batch_size": 1,
            "num_workers": 0,
            "test": {
                "file_paths": [str(f) for f in files],
                "slice_builder": {
                    "name": "SliceBuilder",
                    "patch_shape": list(patch),
                    "stride_shape": list(stride),
                    "halo_shape": list(halo),
                    "skip_shape_check": True,
                },
                "transformer": {"raw": transforms},
            },
        },
        **top,
    }


def read(path: str | Path, name: str = "predictions") -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f[name][...]


# -- test-only models (registered by the tests that use them) ------------------------------------
class _ModelConfig(ComponentConfig):
    in_channels: int = Field(1, description="input channels")
    out_channels: int = Field(1, description="output channels")


class _TestModel(torch.nn.Module):
    Config = _ModelConfig
    spatial_dims = 3
    is_segmentation = True
    final_sigmoid = True

    def __init__(self, in_channels: int = 1, out_channels: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.scale = torch.nn.Parameter(torch.ones(()))

    def final_activation(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


class PatchMean(_TestModel):
    """Every output voxel = mean of the whole input patch (halo included): shows which patch
    wrote a voxel and what input it saw."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        return (self.scale * mean).expand(x.shape[0], self.out_channels, *x.shape[2:]).clone()


class Pointwise(_TestModel):
    """sigmoid(x): depends on the voxel only, so any tiling/blending must reproduce it."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.scale * x[:, :1]).expand(-1, self.out_channels, *x.shape[2:])


class ShiftX(_TestModel):
    """y[..., i] = x[..., i-1] (zero at the border): not flip-equivariant, known TTA answer."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros_like(x[:, :1])
        y[..., 1:] = x[:, :1, ..., :-1]
        return self.scale * y


class Blur(_TestModel):
    """Symmetric 3x3x3 box filter (zero padding): flip-equivariant."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        kernel = torch.ones(1, 1, 3, 3, 3) / 27
        return self.scale * torch.nn.functional.conv3d(x[:, :1], kernel, padding=1)


class Register:
    """Context manager registering test models and removing them afterwards."""

    def __init__(self, **models: type) -> None:
        self.models = models

    def __enter__(self) -> Register:
        from unet_core import registry

        for name, cls in self.models.items():
            registry.register("models", name, cls, replace=True)
        return self

    def __exit__(self, *exc: object) -> None:
        from unet_core.registry import default_registry

        for name in self.models:
            default_registry.unregister("models", name)
