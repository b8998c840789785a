"""ResidualUNetSE3D: the residual 3D U-Net with squeeze-and-excitation blocks."""

from __future__ import annotations

from typing import ClassVar

from unet_plugins.models.config import ResidualUNetSEConfig
from unet_plugins.models.unet import AbstractUNet


class ResidualUNetSE3D(AbstractUNet):
    """Residual 3D U-Net whose blocks end in an SE module (scSE, reduction 1 by default).

    Default: 5 levels from 64 features; 117,233,866 parameters for 1 -> 1 channels.
    """

    Config: ClassVar[type[ResidualUNetSEConfig]] = ResidualUNetSEConfig  # type: ignore[assignment]
