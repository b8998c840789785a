"""ResidualUNet3D: the reference's residual 3D U-Net (Lee et al. 2017)."""

from __future__ import annotations

from typing import ClassVar

from unet_plugins.models.config import ResidualUNetConfig
from unet_plugins.models.unet import AbstractUNet


class ResidualUNet3D(AbstractUNet):
    """Residual 3D U-Net: ResNet blocks, transposed-conv upsampling and summed skips by default.

    Default: 5 levels from 64 features; 113,735,233 parameters for 1 -> 1 channels. With an
    interpolating ``upsample`` the skip is concatenated and the block projects it with its 1x1
    conv (the reference crashes there).
    """

    Config: ClassVar[type[ResidualUNetConfig]] = ResidualUNetConfig  # type: ignore[assignment]
