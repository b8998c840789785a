"""Entry points of the built-in metrics: schemas without torch, scipy or scikit-image.

Each name is a :class:`~unet_core.interfaces.Deferred` whose ``Config`` comes from
:mod:`unet_plugins.metrics.configs`; the metric module is imported only when it is built.
"""

from __future__ import annotations

from pydantic import BaseModel

from unet_core.interfaces import Deferred
from unet_plugins.metrics import configs as c


def _metric(target: str, config: type[BaseModel]) -> Deferred:
    return Deferred(f"unet_plugins.metrics.{target}", config)


DiceCoefficient = _metric("overlap:DiceCoefficient", c.DiceCoefficientConfig)
MeanIoU = _metric("overlap:MeanIoU", c.MeanIoUConfig)
AdaptedRandError = _metric("rand:AdaptedRandError", c.AdaptedRandErrorConfig)
BoundaryAdaptedRandError = _metric(
    "rand:BoundaryAdaptedRandError", c.BoundaryAdaptedRandErrorConfig
)
GenericAdaptedRandError = _metric("rand:GenericAdaptedRandError", c.GenericAdaptedRandErrorConfig)
BoundaryAveragePrecision = _metric(
    "average_precision:BoundaryAveragePrecision", c.BoundaryAveragePrecisionConfig
)
BlobsAveragePrecision = _metric(
    "average_precision:BlobsAveragePrecision", c.BlobsAveragePrecisionConfig
)
BlobsBoundaryAveragePrecision = _metric(
    "average_precision:BlobsBoundaryAveragePrecision", c.BlobsBoundaryAveragePrecisionConfig
)
GenericAveragePrecision = _metric(
    "average_precision:GenericAveragePrecision", c.GenericAveragePrecisionConfig
)
PSNR = _metric("regression:PSNR", c.PSNRConfig)
MSE = _metric("regression:MSE", c.MSEConfig)
InstanceF1 = _metric("instance_f1:InstanceF1", c.InstanceF1Config)
InstanceScores = _metric("instance_scores:InstanceScores", c.InstanceScoresConfig)
