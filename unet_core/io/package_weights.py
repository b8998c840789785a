"""A bioimage.io package's state dict and the registry model it belongs to.

What :mod:`unet_core.engine.checkpoint` needs to read a package as a checkpoint
(``trainer.pre_trained``, fine-tuning), kept apart from building models out of packages
(:mod:`unet_core.exchange.package_model`), which itself loads weights through the checkpoint
module.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from unet_core.errors import ModelPackageError, PluginError
from unet_core.io.model_package import ModelPackage, open_package

#: The reference's package: its model classes are ours under the same names.
REFERENCE_PACKAGE = "pytorch3dunet"


def native_spec(package: ModelPackage) -> dict[str, Any] | None:
    """``{name, **kwargs}`` when the architecture is a model of the registry, else None."""
    from unet_core import registry

    arch = package.architecture()
    if arch is None or arch.callable not in registry.list("models"):
        return None
    if arch.module is not None:
        if arch.module.split(".")[0] != REFERENCE_PACKAGE:
            try:
                cls = registry.get("models", arch.callable)
            except PluginError:
                return None
            if getattr(cls, "__module__", None) != arch.module:
                return None
    return {"name": arch.callable, **arch.kwargs}


def package_checkpoint(path: str | Path) -> dict[str, Any]:
    """The package's state dict as a checkpoint dict (``trainer.pre_trained``, fine-tuning)."""
    package = open_package(path)
    spec = native_spec(package)
    if spec is None:
        raise ModelPackageError(
            f"The model package {str(path)!r} holds no state dict of a unet-core or "
            "pytorch-3dunet model, so its weights cannot be loaded into one for training; "
            "it can only be used for prediction (model_path / unet predict --model)."
        )
    return {"model_state_dict": package_state_dict(package), "package_model": spec}


def package_state_dict(package: ModelPackage) -> Any:
    entry = package.weights("pytorch_state_dict") or {}
    data = package.read(str(entry.get("source")), sha256=entry.get("sha256"), what="weights file")
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
