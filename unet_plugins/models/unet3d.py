"""UNet3D: the reference's 3D U-Net (Cicek et al. 2016)."""

from __future__ import annotations

from typing import ClassVar

from unet_plugins.models.config import UNetConfig
from unet_plugins.models.unet import AbstractUNet


class UNet3D(AbstractUNet):
    """3D U-Net: DoubleConv blocks, max pooling, nearest upsampling, skips concatenated first.

    Default: 4 levels of 64/128/256/512 features, 'gcr' units; 16,318,691 parameters for 1 -> 1
    channels, exactly the reference's keys and shapes.
    """

    Config: ClassVar[type[UNetConfig]] = UNetConfig  # type: ignore[assignment]
