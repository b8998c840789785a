"""``PackagePreprocessing``: a bioimage.io package's input steps, with fixed numbers.

The prediction engine writes this transform into the test pipeline when ``model_path`` is a
model package (see :mod:`unet_core.exchange.package_steps`): it resolves the package's
statistics over each whole input file first, so every patch gets the same numbers, and this
transform applies them voxel by voxel exactly as bioimage.io defines the steps.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from unet_core.interfaces import ComponentConfig
from unet_plugins.transforms.base import Transform
from unet_plugins.transforms.configs import TransformConfig


class PackageStepConfig(ComponentConfig):
    id: Literal["fixed_zero_mean_unit_variance", "scale_linear", "clip", "binarize", "sigmoid"] = (
        Field(..., description="bioimage.io step id (steps with fixed numbers only).")
    )
    kwargs: dict[str, float] = Field(default_factory=dict, description="The step's numbers.")


class PackagePreprocessingConfig(TransformConfig):
    steps: list[PackageStepConfig] = Field(
        default_factory=list,
        description="A model package's input steps, statistics already resolved.",
    )


class PackagePreprocessing(Transform):
    """(Z,Y,X) or (C,Z,Y,X) -> float32 through the package's fixed steps."""

    Config = PackagePreprocessingConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        from unet_core.dataset_api import Step

        self.steps = [Step(s.id, dict(s.kwargs)) for s in config.steps]

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        from unet_core.dataset_api import apply_steps

        return apply_steps(self.steps, np.asarray(array))
