"""The encoder/decoder shared by every model of the family.

Subclasses only pick a ``Config`` (which fixes the dimension, block type and defaults).
Output contract: ``logits(x)`` always returns raw logits; ``forward`` returns logits in train
mode and ``final_activation(logits)`` in eval mode (sigmoid, softmax over channels, or identity
when ``is_segmentation`` is false).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from unet_core.errors import DataError
from unet_plugins.models import blocks, plan
from unet_plugins.models.config import UNetConfig, patch_shape_problem, spatial_axes, validated
from unet_plugins.models.diagnosis import guess_config_differences

#: Constructor parameters in the reference's positional order.
POSITIONAL = (
    "in_channels",
    "out_channels",
    "final_sigmoid",
    "f_maps",
    "layer_order",
    "num_groups",
    "num_levels",
    "is_segmentation",
    "conv_padding",
    "conv_upscale",
    "upsample",
    "dropout_prob",
)


class AbstractUNet(nn.Module):
    """A U-Net: encoders (pool + block), decoders (upsample + join + block), 1x1 final conv.

    Build it from arguments as the reference takes them (``UNet3D(1, 2, f_maps=32)``) or from a
    ``Config``/mapping; unknown or inconsistent parameters raise ConfigError.
    """

    Config: ClassVar[type[UNetConfig]] = UNetConfig
    #: names the config keys a non-fitting checkpoint differs in (see models/diagnosis.py)
    explain_mismatch = staticmethod(guess_config_differences)

    def __init__(self, *args: Any, **params: Any) -> None:
        super().__init__()
        if len(args) == 1 and isinstance(args[0], (BaseModel, Mapping)) and not params:
            source: Any = args[0]
        else:  # the reference's positional order: UNet3D(in_channels, out_channels, ...)
            if len(args) > len(POSITIONAL):
                raise TypeError(
                    f"{type(self).__name__} takes at most {len(POSITIONAL)} positional arguments"
                )
            source = {**dict(zip(POSITIONAL, args)), **params}
        cfg = validated(self.Config, source, type(self).__name__)
        self.config = cfg
        arch = cfg.arch()
        self.in_channels = cfg.in_channels
        self.out_channels = cfg.out_channels
        self.spatial_dims = arch.dims
        self.is_segmentation = cfg.is_segmentation
        self.final_sigmoid = cfg.final_sigmoid
        self.encoders = nn.ModuleList(
            blocks.Encoder(self._block(cin, cout, arch, True), arch, pool=i > 0)
            for i, (cin, cout) in enumerate(zip((cfg.in_channels, *arch.f_maps[:-1]), arch.f_maps))
        )
        decoders = []
        for j in range(arch.levels - 1):
            _, skip, basic_in = arch.decoder_channels(j)
            decoders.append(
                blocks.Decoder(
                    blocks.make_upsampling(arch, j),
                    self._block(basic_in, skip, arch, False),
                    arch.join,
                )
            )
        self.decoders = nn.ModuleList(decoders)
        self.final_conv = blocks.conv_cls(arch.dims)(arch.f_maps[0], cfg.out_channels, 1)

    def _block(self, cin: int, cout: int, arch: plan.Arch, encoder: bool) -> nn.Module:
        if arch.block == "double":
            return blocks.DoubleConv(cin, cout, arch=arch, encoder=encoder)
        if arch.block == "residual_se":
            return blocks.ResNetBlockSE(
                cin,
                cout,
                arch=arch,
                encoder=encoder,
                se_module=getattr(self.config, "se_module", "scse"),
                se_reduction_ratio=getattr(self.config, "se_reduction_ratio", 1),
            )
        return blocks.ResNetBlock(cin, cout, arch=arch, encoder=encoder)

    @classmethod
    def from_config(cls, config: BaseModel, **context: Any) -> AbstractUNet:
        """What ``registry.create("models", spec)`` calls."""
        if context:
            raise TypeError(f"{cls.__name__} takes no build context, got {sorted(context)}")
        return cls(config)

    # -- forward -------------------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw network output, whatever the mode."""
        if not torch.jit.is_scripting():  # a scripted graph checks nothing of its input
            self._check_input(x)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        skips.pop()  # the deepest features are the decoders' input, not a skip
        for decoder in self.decoders:
            x = decoder(skips.pop(), x)
        out: torch.Tensor = self.final_conv(x)
        return out

    def final_activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid, softmax over channels, or identity (regression)."""
        if not self.is_segmentation:
            return logits
        if self.final_sigmoid:
            return torch.sigmoid(logits)
        return torch.softmax(logits, dim=1)

    def forward(
        self, x: torch.Tensor, return_logits: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Logits in train mode; ``final_activation(logits)`` in eval mode.

        ``return_logits=True`` gives ``(final_activation(logits), logits)`` in either mode, as
        the reference's ``forward(x, return_logits=True)`` does.
        """
        logits = self.logits(x)
        if return_logits:
            return self.final_activation(logits), logits
        return logits if self.training else self.final_activation(logits)

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        dims = self.spatial_dims
        if x.dim() != dims + 2 or x.shape[1] != self.in_channels:
            layout = "(N, C, Z, Y, X)" if dims == 3 else "(N, C, Y, X)"
            hint = (
                " For 2D data stored with a singleton z, squeeze that axis first."
                if dims == 2 and x.dim() == 5
                else ""
            )
            raise DataError(
                f"{type(self).__name__} expects input {layout} with C = in_channels = "
                f"{self.in_channels}, got shape {tuple(x.shape)}.{hint} Set model.in_channels "
                "to the data's channels or fix the input layout."
            )

    # -- config-time helpers (no weights allocated) --------------------------------------------
    @classmethod
    def _arch(cls, config: Any) -> plan.Arch:
        return validated(cls.Config, config, cls.__name__).arch()

    @classmethod
    def patch_multiple(cls, config: Any) -> tuple[int, ...]:
        """Per-axis multiple that patch sizes should have (pool_kernel ** (levels - 1))."""
        return plan.patch_multiple(cls._arch(config))

    @classmethod
    def receptive_field(cls, config: Any) -> tuple[int, ...]:
        """Theoretical receptive field per axis, in voxels."""
        return plan.receptive_field(cls._arch(config))

    @classmethod
    def output_shape(cls, config: Any, patch_shape: Sequence[int]) -> tuple[int, ...]:
        """Spatial output size for a spatial input size (== input unless convs are unpadded)."""
        sizes, problem = plan.walk_shape(cls._arch(config), _spatial(cls, patch_shape))
        if problem:
            raise ValueError(problem)
        return sizes[-1]

    @classmethod
    def check_patch_shape(
        cls, config: Any, patch_shape: Sequence[int], *, strict: bool = False
    ) -> str | None:
        """A message if this model cannot take ``patch_shape`` (Z,Y,X, or Y,X for 2D), else None.

        Always checked: the number of axes (a 2D model needs z == 1) and that every level keeps
        at least one voxel. ``strict`` also requires multiples of :meth:`patch_multiple`; the
        reference runs other sizes (decoders resize to the skip size), so that is advice only.
        """
        return patch_shape_problem(cls.Config, cls.__name__, config, patch_shape, strict=strict)


def _spatial(cls: type[AbstractUNet], shape: Sequence[int]) -> list[int]:
    return spatial_axes(cls.Config, shape)
