"""Entry points of the built-in metrics: schemas without torch, scipy or scikit-image.

Each name is a :class:`~unet_core.interfaces.Deferred` whose ``Config`` comes from
:mod:`unet_plugins.metrics.configs`; the metric module is imported only when it is built.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from unet_core.interfaces import Deferred
from unet_plugins.metrics import configs as c


def _metric(target: str, config: type[BaseModel], higher: bool, **light: Any) -> Deferred:
    """``higher``: the metric's direction, known at config time (a scheduler's mode is
    checked against it); ``light``: other config-time helpers."""
    return Deferred(f"unet_plugins.metrics.{target}", config, higher_is_better=higher, **light)


DiceCoefficient = _metric(
    "overlap:DiceCoefficient",
    c.DiceCoefficientConfig,
    True,
    check_config=c.check_skip_channels("DiceCoefficient"),
)
MeanIoU = _metric(
    "overlap:MeanIoU", c.MeanIoUConfig, True, check_config=c.check_skip_channels("MeanIoU")
)
AdaptedRandError = _metric("rand:AdaptedRandError", c.AdaptedRandErrorConfig, False)
BoundaryAdaptedRandError = _metric(
    "rand:BoundaryAdaptedRandError", c.BoundaryAdaptedRandErrorConfig, False
)
GenericAdaptedRandError = _metric(
    "rand:GenericAdaptedRandError", c.GenericAdaptedRandErrorConfig, False
)
BoundaryAveragePrecision = _metric(
    "average_precision:BoundaryAveragePrecision", c.BoundaryAveragePrecisionConfig, True
)
BlobsAveragePrecision = _metric(
    "average_precision:BlobsAveragePrecision", c.BlobsAveragePrecisionConfig, True
)
BlobsBoundaryAveragePrecision = _metric(
    "average_precision:BlobsBoundaryAveragePrecision", c.BlobsBoundaryAveragePrecisionConfig, True
)
GenericAveragePrecision = _metric(
    "average_precision:GenericAveragePrecision", c.GenericAveragePrecisionConfig, True
)
PSNR = _metric("regression:PSNR", c.PSNRConfig, True)
MSE = _metric("regression:MSE", c.MSEConfig, False)
InstanceF1 = _metric("instance_f1:InstanceF1", c.InstanceF1Config, True)
InstanceScores = _metric("instance_scores:InstanceScores", c.InstanceScoresConfig, True)
