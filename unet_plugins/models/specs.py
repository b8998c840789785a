"""Entry points of the built-in models: schemas and the patch-shape check without torch.

Each name is a :class:`~unet_core.interfaces.Deferred` whose ``Config`` comes from
:mod:`unet_plugins.models.config`; ``check_patch_shape(config, patch_shape)`` and
``spatial_dims`` are given as light attributes, so ``unet config validate`` checks the
loaders' patch shapes against the model without importing torch.
"""

from __future__ import annotations

from functools import partial

from unet_core.interfaces import Deferred
from unet_plugins.models import config as c


def _model(module: str, name: str, config: type[c.UNetConfig]) -> Deferred:
    return Deferred(
        f"unet_plugins.models.{module}:{name}",
        config,
        check_patch_shape=partial(c.patch_shape_problem, config, name),
        spatial_dims=config.spatial_dims,
    )


UNet3D = _model("unet3d", "UNet3D", c.UNetConfig)
ResidualUNet3D = _model("residual_unet3d", "ResidualUNet3D", c.ResidualUNetConfig)
ResidualUNetSE3D = _model("residual_unet_se3d", "ResidualUNetSE3D", c.ResidualUNetSEConfig)
UNet2D = _model("unet2d", "UNet2D", c.UNet2DConfig)
ResidualUNet2D = _model("residual_unet2d", "ResidualUNet2D", c.ResidualUNet2DConfig)
