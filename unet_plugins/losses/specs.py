"""Entry points of the built-in losses: schemas and config-time checks without torch.

Each name is a :class:`~unet_core.interfaces.Deferred`: ``unet config validate`` reads its
``Config`` and ``check_config`` from :mod:`unet_plugins.losses.configs`; the loss module (and
torch) is imported only when the loss is built.
"""

from __future__ import annotations

from functools import partial

from unet_core.interfaces import Deferred
from unet_plugins.losses import configs as c
from unet_plugins.losses.config_checks import check_loss_config


def _loss(target: str, config: type[c.LossConfig]) -> Deferred:
    name = target.rpartition(":")[2]
    check = partial(check_loss_config, name, config)
    return Deferred(f"unet_plugins.losses.{target}", config, check_config=check)


BCEWithLogitsLoss = _loss("bce:BCEWithLogitsLoss", c.BCEWithLogitsLossConfig)
DiceLoss = _loss("dice:DiceLoss", c.DiceLossConfig)
BCEDiceLoss = _loss("dice:BCEDiceLoss", c.BCEDiceLossConfig)
GeneralizedDiceLoss = _loss("dice:GeneralizedDiceLoss", c.GeneralizedDiceLossConfig)
CrossEntropyLoss = _loss("cross_entropy:CrossEntropyLoss", c.CrossEntropyLossConfig)
WeightedCrossEntropyLoss = _loss(
    "cross_entropy:WeightedCrossEntropyLoss", c.WeightedCrossEntropyLossConfig
)
PixelWiseCrossEntropyLoss = _loss(
    "cross_entropy:PixelWiseCrossEntropyLoss", c.PixelWiseCrossEntropyLossConfig
)
MSELoss = _loss("regression:MSELoss", c.MSELossConfig)
L1Loss = _loss("regression:L1Loss", c.L1LossConfig)
SmoothL1Loss = _loss("regression:SmoothL1Loss", c.SmoothL1LossConfig)
WeightedSmoothL1Loss = _loss("regression:WeightedSmoothL1Loss", c.WeightedSmoothL1LossConfig)
FocalLoss = _loss("imbalance:FocalLoss", c.FocalLossConfig)
TverskyLoss = _loss("imbalance:TverskyLoss", c.TverskyLossConfig)
