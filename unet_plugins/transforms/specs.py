"""Entry points of the built-in transforms: schemas without scipy or scikit-image.

Each name is a :class:`~unet_core.interfaces.Deferred` whose ``Config`` comes from
:mod:`unet_plugins.transforms.configs`; the transform module is imported only when a pipeline
is built.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from unet_core.interfaces import Deferred
from unet_plugins.transforms import configs as c


def _transform(target: str, config: type[BaseModel], **light: Any) -> Deferred:
    return Deferred(f"unet_plugins.transforms.{target}", config, **light)


RandomFlip = _transform("spatial:RandomFlip", c.RandomFlipConfig)
RandomRotate90 = _transform(
    "spatial:RandomRotate90", c.NoParametersConfig, check_patch=c.rotate90_patch_problem
)
RandomRotate = _transform("spatial:RandomRotate", c.RandomRotateConfig)
ElasticDeformation = _transform("spatial:ElasticDeformation", c.ElasticDeformationConfig)
CropToFixed = _transform("spatial:CropToFixed", c.CropToFixedConfig)
RandomContrast = _transform("intensity:RandomContrast", c.RandomContrastConfig)
RandomGammaCorrection = _transform("intensity:RandomGammaCorrection", c.RandomGammaCorrectionConfig)
AdditiveGaussianNoise = _transform("intensity:AdditiveGaussianNoise", c.AdditiveGaussianNoiseConfig)
AdditivePoissonNoise = _transform("intensity:AdditivePoissonNoise", c.AdditivePoissonNoiseConfig)
GaussianBlur3D = _transform("intensity:GaussianBlur3D", c.GaussianBlur3DConfig)
Standardize = _transform("normalize:Standardize", c.StandardizeConfig)
PercentileNormalizer = _transform("normalize:PercentileNormalizer", c.PercentileNormalizerConfig)
Normalize = _transform("normalize:Normalize", c.NormalizeConfig)
StandardLabelToBoundary = _transform(
    "labels:StandardLabelToBoundary", c.StandardLabelToBoundaryConfig
)
BlobsToMask = _transform("labels:BlobsToMask", c.BlobsToMaskConfig)
LabelToAffinities = _transform("labels:LabelToAffinities", c.LabelToAffinitiesConfig)
LabelToZAffinities = _transform("labels:LabelToZAffinities", c.LabelToZAffinitiesConfig)
LabelToBoundaryAndAffinities = _transform(
    "labels:LabelToBoundaryAndAffinities", c.LabelToBoundaryAndAffinitiesConfig
)
LabelToMaskAndAffinities = _transform(
    "labels:LabelToMaskAndAffinities", c.LabelToMaskAndAffinitiesConfig
)
RandomLabelToAffinities = _transform(
    "labels:RandomLabelToAffinities", c.RandomLabelToAffinitiesConfig
)
LabelToDistance = _transform("distance:LabelToDistance", c.LabelToDistanceConfig)
Relabel = _transform("labels:Relabel", c.RelabelConfig)
RgbToLabel = _transform("labels:RgbToLabel", c.NoParametersConfig)
ToTensor = _transform("tensor:ToTensor", c.ToTensorConfig)
LabelToTensor = _transform("tensor:LabelToTensor", c.NoParametersConfig)
Identity = _transform("tensor:Identity", c.NoParametersConfig)


def _package_preprocessing() -> Deferred:
    from unet_plugins.transforms.package import PackagePreprocessingConfig

    return _transform("package:PackagePreprocessing", PackagePreprocessingConfig)


PackagePreprocessing = _package_preprocessing()
