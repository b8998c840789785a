"""UNet2D: the reference's 2D U-Net (Ronneberger et al. 2015)."""

from __future__ import annotations

from typing import ClassVar

from unet_plugins.models.config import UNet2DConfig
from unet_plugins.models.unet import AbstractUNet


class UNet2D(AbstractUNet):
    """2D U-Net on (N, C, Y, X); the engines squeeze the singleton z of 2D data.

    Default: 4 levels from 64 features; 5,443,235 parameters for 1 -> 1 channels.
    """

    Config: ClassVar[type[UNet2DConfig]] = UNet2DConfig  # type: ignore[assignment]
