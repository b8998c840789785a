"""Building blocks of the U-Net family, for 2D and 3D alike.

Module and child names follow the reference (pytorch-3dunet) exactly, because they are the
state-dict keys of its checkpoints: ``SingleConv1.groupnorm``, ``conv2.conv``,
``se_module.cSE.fc1``, ``upsampling.upsample.conv_transposed`` and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from unet_plugins.models import plan


def conv_cls(dims: int) -> type[nn.Conv2d] | type[nn.Conv3d]:
    return nn.Conv3d if dims == 3 else nn.Conv2d


def _same_padding(kernel: Sequence[int]) -> Any:
    return tuple(k // 2 for k in kernel)


def _axes(values: Sequence[int]) -> Any:
    """Per-axis sizes as torch wants them (a tuple of the layer's dimension)."""
    return tuple(values)


class SingleConv(nn.Sequential):
    """One conv unit whose layers come in ``order`` (e.g. 'gcr': GroupNorm, conv, ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        order: str,
        dims: int,
        kernel_size: Sequence[int],
        padding: Sequence[int],
        num_groups: int,
        dropout_prob: float,
    ) -> None:
        super().__init__()
        conv_at = order.index("c")
        norm_bias = not ("g" in order or "b" in order)  # a norm's shift makes a conv bias moot
        for i, letter in enumerate(order):
            channels = in_channels if i < conv_at else out_channels
            if letter == "c":
                conv = conv_cls(dims)(
                    in_channels,
                    out_channels,
                    _axes(kernel_size),
                    padding=_axes(padding),
                    bias=norm_bias,
                )
                self.add_module("conv", conv)
            elif letter == "g":
                groups = plan.groups_for(channels, num_groups)
                self.add_module("groupnorm", nn.GroupNorm(groups, channels))
            elif letter == "b":
                bn = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
                self.add_module("batchnorm", bn(channels))
            elif letter == "r":
                self.add_module("ReLU", nn.ReLU(inplace=True))
            elif letter == "l":
                self.add_module("LeakyReLU", nn.LeakyReLU(inplace=True))
            elif letter == "e":
                self.add_module("ELU", nn.ELU(inplace=True))
            elif letter == "d":
                self.add_module("dropout", nn.Dropout(p=dropout_prob))
            elif letter == "D":
                self.add_module("dropout2d", nn.Dropout2d(p=dropout_prob))
            else:  # the config validator rejects these first
                raise ValueError(f"unknown layer_order letter {letter!r}")


class DoubleConv(nn.Sequential):
    """Two conv units; in the encoder the first one widens to about half the output."""

    def __init__(
        self, in_channels: int, out_channels: int, *, arch: plan.Arch, encoder: bool
    ) -> None:
        super().__init__()
        mid, _ = plan.double_conv_channels(in_channels, out_channels, encoder, arch.conv_upscale)
        common = {
            "order": arch.layer_order,
            "dims": arch.dims,
            "kernel_size": arch.conv_kernel,
            "padding": arch.conv_padding,
            "num_groups": arch.num_groups,
        }
        p1, p2 = arch.dropout
        self.add_module("SingleConv1", SingleConv(in_channels, mid, dropout_prob=p1, **common))  # type: ignore[arg-type]
        self.add_module("SingleConv2", SingleConv(mid, out_channels, dropout_prob=p2, **common))  # type: ignore[arg-type]


class ResNetBlock(nn.Module):
    """1x1 projection (if channels change), two conv units, sum with the projection, activation.

    The second unit has no activation; the block's activation follows the sum (LeakyReLU with
    slope 0.1 if the order has 'l', ELU for 'e', else ReLU), as in the reference.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, arch: plan.Arch, encoder: bool = True
    ) -> None:
        super().__init__()
        del encoder  # same structure on both paths
        conv = conv_cls(arch.dims)
        self.conv1: nn.Module = (
            conv(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()
        )
        common = {
            "dims": arch.dims,
            "kernel_size": arch.conv_kernel,
            "padding": _same_padding(arch.conv_kernel),
            "num_groups": arch.num_groups,
        }
        p1, p2 = arch.dropout
        order = arch.layer_order
        self.conv2 = SingleConv(out_channels, out_channels, order=order, dropout_prob=p1, **common)  # type: ignore[arg-type]
        self.conv3 = SingleConv(
            out_channels,
            out_channels,
            order=plan.strip_activations(order),
            dropout_prob=p2,
            **common,  # type: ignore[arg-type]
        )
        if "l" in order:
            self.non_linearity: nn.Module = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        elif "e" in order:
            self.non_linearity = nn.ELU(inplace=True)
        else:
            self.non_linearity = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.conv1(x)
        out = self.conv3(self.conv2(residual))
        return self.non_linearity(out + residual)


class ChannelSE(nn.Module):
    """Squeeze (global mean) and excite channels: x * sigmoid(fc2(relu(fc1(mean(x)))))."""

    def __init__(self, channels: int, reduction_ratio: int = 1) -> None:
        super().__init__()
        reduced = max(channels // reduction_ratio, 1)
        self.fc1 = nn.Linear(channels, reduced)
        self.fc2 = nn.Linear(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=tuple(range(2, x.dim())))
        scale = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))
        return x * scale.view(*scale.shape, *([1] * (x.dim() - 2)))


class SpatialSE(nn.Module):
    """Squeeze channels with a 1x1 conv and excite voxels: x * sigmoid(conv(x))."""

    def __init__(self, channels: int, dims: int) -> None:
        super().__init__()
        self.conv = conv_cls(dims)(channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class ChannelSpatialSE(nn.Module):
    """scSE: the element-wise maximum of channel SE and spatial SE."""

    def __init__(self, channels: int, dims: int, reduction_ratio: int = 1) -> None:
        super().__init__()
        self.cSE = ChannelSE(channels, reduction_ratio)
        self.sSE = SpatialSE(channels, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(self.cSE(x), self.sSE(x))


def se_block(kind: str, channels: int, dims: int, reduction_ratio: int) -> nn.Module:
    if kind == "cse":
        return ChannelSE(channels, reduction_ratio)
    if kind == "sse":
        return SpatialSE(channels, dims)
    return ChannelSpatialSE(channels, dims, reduction_ratio)


class ResNetBlockSE(ResNetBlock):
    """ResNetBlock followed by a squeeze-and-excitation module (``se_module``)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        arch: plan.Arch,
        encoder: bool = True,
        se_module: str = "scse",
        se_reduction_ratio: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, arch=arch, encoder=encoder)
        self.se_module = se_block(se_module, out_channels, arch.dims, se_reduction_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.se_module(super().forward(x))


# -- encoder / decoder stages -------------------------------------------------------------------
class Encoder(nn.Module):
    """Optional pooling (every level but the first), then the basic module."""

    def __init__(self, basic_module: nn.Module, arch: plan.Arch, pool: bool) -> None:
        super().__init__()
        self.pooling: nn.Module | None = None
        if pool:
            if arch.pool_type == "max":
                cls: type[nn.Module] = nn.MaxPool3d if arch.dims == 3 else nn.MaxPool2d
            else:
                cls = nn.AvgPool3d if arch.dims == 3 else nn.AvgPool2d
            self.pooling = cls(kernel_size=arch.pool_kernel)
        self.basic_module = basic_module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pooling is not None:
            x = self.pooling(x)
        return self.basic_module(x)


class InterpolateUpsampling(nn.Module):
    """Resize to the skip tensor's size by interpolation (no weights)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=skip.shape[2:], mode=self.mode)


class _DeconvResize(nn.Module):
    """Transposed conv, then nearest resize to the skip size (it yields 2n-1, not 2n)."""

    def __init__(self, conv_transposed: nn.Module) -> None:
        super().__init__()
        self.conv_transposed = conv_transposed

    def forward(self, x: torch.Tensor, size: torch.Size) -> torch.Tensor:
        x = self.conv_transposed(x)
        if x.shape[2:] != size:
            x = F.interpolate(x, size=size)
        return x


class TransposeConvUpsampling(nn.Module):
    """Learned upsampling: stride = the pooling window, kernel = the conv kernel, no bias."""

    def __init__(self, in_channels: int, out_channels: int, arch: plan.Arch) -> None:
        super().__init__()
        cls = nn.ConvTranspose3d if arch.dims == 3 else nn.ConvTranspose2d
        deconv = cls(
            in_channels,
            out_channels,
            kernel_size=_axes(arch.conv_kernel),
            stride=_axes(arch.pool_kernel),
            padding=_same_padding(arch.conv_kernel),
            bias=False,
        )
        self.upsample = _DeconvResize(deconv)

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.upsample(x, skip.shape[2:])


class NoUpsampling(nn.Module):
    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x


class Decoder(nn.Module):
    """Upsample to the skip's size, join (concat skip-first, or sum), then the basic module."""

    def __init__(self, upsampling: nn.Module, basic_module: nn.Module, join: str) -> None:
        super().__init__()
        self.upsampling = upsampling
        self.basic_module = basic_module
        self.concat = join == "concat"

    def forward(self, skip: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        x = self.upsampling(skip, x)
        x = torch.cat((skip, x), dim=1) if self.concat else skip + x
        return self.basic_module(x)


def make_upsampling(arch: plan.Arch, j: int) -> nn.Module:
    up, skip, _ = arch.decoder_channels(j)
    if arch.upsample == "deconv":
        return TransposeConvUpsampling(up, skip, arch)
    if arch.upsample == "none":
        return NoUpsampling()
    return InterpolateUpsampling(arch.upsample)
