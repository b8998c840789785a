"""A model package's processing inside a prediction run: its input steps as the test
transforms of each file, its output steps around the network.

Input: the package states how its network's input is normalised, so its steps replace the
value transforms of ``loaders.test.transformer.raw`` (a warning names what is replaced); only
shape transforms (``ToTensor``, ``Identity``) are kept. Statistics are resolved per input file
over the whole volume (:func:`~unet_core.exchange.package_steps.resolve_statistics`) and
written into a ``PackagePreprocessing`` transform with fixed numbers.

Output: elementwise steps (sigmoid, binarize, clip, scale_linear, ...) and softmax over the
channels run on each patch's output, inside :class:`PostprocessedNetwork`; with the default
``overwrite`` blending that equals applying them to the whole output, with ``gaussian``
blending the blended values are those of the finished patches, as for a network's own final
activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unet_core.exchange.package_steps import package_steps, resolve_statistics
from unet_core.exchange.preprocessing import NEUTRAL, Step

#: The transform (a built-in plugin, by its registry name) that applies fixed package steps.
TRANSFORM = "PackagePreprocessing"


def input_steps(model_path: str | Path | None) -> list[Step] | None:
    """The package's input steps (checked), or None when ``model_path`` is no package."""
    from unet_core.io.model_package import is_model_package, open_package

    if model_path is None or not is_model_package(model_path):
        return None
    return package_steps(open_package(model_path), "pre")


def file_transforms(
    steps: Sequence[Step], volume: Any, configured: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Test transforms for one input volume: the resolved package steps, then the shape
    transforms of ``configured`` (ToTensor with a channel axis if it has none)."""
    fixed = resolve_statistics(steps, volume)
    kept = [dict(t) for t in configured if is_shape_only(t)]
    if not any(t.get("name") == "ToTensor" for t in kept):
        kept.append({"name": "ToTensor", "expand_dims": True})
    if not fixed:
        return kept
    spec = {"name": TRANSFORM, "steps": [{"id": s.id, "kwargs": s.kwargs} for s in fixed]}
    return [spec, *kept]


def is_shape_only(transform: dict[str, Any]) -> bool:
    return transform.get("name") in NEUTRAL and not transform.get("normalize", False)


def replaced_warning(
    model_path: str | Path, steps: Sequence[Step], configured: Sequence[dict[str, Any]]
) -> str | None:
    """What the package's steps replace in the config, when that is another normalisation."""
    from unet_core.errors import ExportError
    from unet_core.exchange.preprocessing import map_transforms

    replaced = [str(t.get("name")) for t in configured if not is_shape_only(t)]
    try:
        same = [s.id for s in map_transforms(configured, ["z", "y", "x"])] == [s.id for s in steps]
    except ExportError:  # a transform bioimage.io has no step for
        same = False
    if not replaced or same:
        return None
    return (
        f"The model package {str(model_path)!r} normalises its input with "
        f"{[s.id for s in steps] or 'nothing'}; that replaces loaders.test.transformer.raw's "
        f"{replaced} (a package states what its network expects). Predict with a checkpoint "
        "to use the config's transforms instead."
    )


def with_postprocessing(network: nn.Module, package: Any) -> nn.Module:
    """``network`` followed by the package's output steps (itself when there are none)."""
    steps = package_steps(package, "post")
    return PostprocessedNetwork(network, steps) if steps else network


class PostprocessedNetwork(nn.Module):
    """A network whose output goes through a package's output steps; reads as the network
    (``out_channels``, ``spatial_dims``, ... come from it)."""

    def __init__(self, network: nn.Module, steps: Sequence[Step]) -> None:
        super().__init__()
        self.network = network
        self.steps = list(steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.network(x)
        for step in self.steps:
            out = apply_step(step, out)
        return out

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "network":
                raise
            return getattr(super().__getattr__("network"), name)


def apply_step(step: Step, y: torch.Tensor) -> torch.Tensor:
    """One elementwise (or per-voxel softmax) step on a (batch, channel, ...) tensor."""
    kw: dict[str, float] = step.kwargs
    if step.id == "sigmoid":
        return torch.sigmoid(y)
    if step.id == "softmax":
        return torch.softmax(y, dim=1)
    if step.id == "binarize":
        return (y > kw["threshold"]).to(y.dtype)
    if step.id == "clip":
        return torch.clamp(y, kw.get("min"), kw.get("max"))
    if step.id == "scale_linear":
        return y * kw["gain"] + kw["offset"]
    if step.id == "fixed_zero_mean_unit_variance":
        return (y - kw["mean"]) / (kw["std"] + kw["eps"])
    raise ValueError(f"not an output step: {step.id}")
