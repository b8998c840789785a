"""ResidualUNet2D: the residual U-Net on 2D images."""

from __future__ import annotations

from typing import ClassVar

from unet_plugins.models.config import ResidualUNet2DConfig
from unet_plugins.models.unet import AbstractUNet


class ResidualUNet2D(AbstractUNet):
    """Residual 2D U-Net on (N, C, Y, X); unlike the reference, the engines recognise it as 2D.

    Default: 5 levels from 64 features; 38,385,217 parameters for 1 -> 1 channels.
    """

    Config: ClassVar[type[ResidualUNet2DConfig]] = ResidualUNet2DConfig  # type: ignore[assignment]
