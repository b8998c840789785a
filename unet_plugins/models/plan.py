"""The U-Net's architecture as plain numbers, computed without torch.

One description (:class:`Arch`) drives three things that must agree: the config validators
(GroupNorm divisibility per layer, patch sizes), the module builder, and ``unet models
summary`` (receptive field, output shape). Keeping it torch-free lets a config be checked in
milliseconds, before any weight is allocated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: layer_order letters -> what they add (the reference's set).
LAYER_LETTERS = {
    "c": "convolution",
    "g": "GroupNorm",
    "b": "BatchNorm",
    "r": "ReLU",
    "l": "LeakyReLU",
    "e": "ELU",
    "d": "Dropout",
    "D": "Dropout2d",
}
ACTIVATION_LETTERS = "rle"
INTERPOLATION_MODES = ("nearest", "linear", "bilinear", "trilinear", "area")


@dataclass(frozen=True)
class Arch:
    """Everything that fixes the network's layers and shapes."""

    dims: int
    block: str  # "double" (DoubleConv), "residual" (ResNetBlock) or "residual_se"
    in_channels: int
    out_channels: int
    f_maps: tuple[int, ...]
    layer_order: str
    num_groups: int
    conv_kernel: tuple[int, ...]
    conv_padding: tuple[int, ...]
    pool_kernel: tuple[int, ...]
    pool_type: str
    conv_upscale: int
    upsample: str  # an interpolation mode, "deconv" or "none" ("default" already resolved)
    join: str  # "concat" or "sum"
    dropout: tuple[float, float]

    @property
    def residual(self) -> bool:
        return self.block != "double"

    @property
    def levels(self) -> int:
        return len(self.f_maps)

    @property
    def block_padding(self) -> tuple[int, ...]:
        """Residual blocks always pad to keep the size (the sum needs it); DoubleConv as set."""
        return tuple(k // 2 for k in self.conv_kernel) if self.residual else self.conv_padding

    def decoder_channels(self, j: int) -> tuple[int, int, int]:
        """(channels coming up, skip channels, basic-module input) of decoder ``j``."""
        rev = self.f_maps[::-1]
        up, skip = rev[j], rev[j + 1]
        if self.join == "sum":
            return up, skip, skip
        if self.upsample == "deconv":  # the transposed conv already maps up -> skip channels
            return up, skip, 2 * skip
        return up, skip, up + skip


def resolve_upsample(upsample: str | None, residual: bool) -> tuple[str, str]:
    """Config value -> (mode, join). 'default' is nearest+concat, or deconv+sum for residual."""
    if upsample is None or upsample == "none":
        return "none", "concat"
    if upsample == "default":
        return ("deconv", "sum") if residual else ("nearest", "concat")
    return upsample, "concat"


@dataclass(frozen=True)
class ConvLayer:
    """One SingleConv: where it sits in the state dict and its channel counts."""

    path: str
    in_channels: int
    out_channels: int
    order: str

    def norm_channels(self, letter: str) -> int:
        """Channels seen by the norm ``letter``: the input's if it comes before the conv."""
        return (
            self.in_channels
            if self.order.index(letter) < self.order.index("c")
            else (self.out_channels)
        )


def strip_activations(order: str) -> str:
    """The residual block's last conv has no activation: it comes after the sum."""
    return "".join(ch for ch in order if ch not in ACTIVATION_LETTERS)


def double_conv_channels(cin: int, cout: int, encoder: bool, upscale: int) -> tuple[int, int]:
    """(first conv out, second conv in) of a DoubleConv, as the reference computes them."""
    if not encoder:
        return cout, cout
    mid = cout if upscale == 1 else cout // 2
    mid = max(mid, cin)
    return mid, mid


def block_layers(arch: Arch, path: str, cin: int, cout: int, encoder: bool) -> list[ConvLayer]:
    """The SingleConvs of one basic module."""
    if arch.block == "double":
        mid, _ = double_conv_channels(cin, cout, encoder, arch.conv_upscale)
        return [
            ConvLayer(f"{path}.SingleConv1", cin, mid, arch.layer_order),
            ConvLayer(f"{path}.SingleConv2", mid, cout, arch.layer_order),
        ]
    return [
        ConvLayer(f"{path}.conv2", cout, cout, arch.layer_order),
        ConvLayer(f"{path}.conv3", cout, cout, strip_activations(arch.layer_order)),
    ]


def conv_layers(arch: Arch) -> Iterator[ConvLayer]:
    """Every SingleConv of the network in state-dict order."""
    cin = arch.in_channels
    for i, f in enumerate(arch.f_maps):
        yield from block_layers(arch, f"encoders.{i}.basic_module", cin, f, True)
        cin = f
    for j in range(arch.levels - 1):
        _, skip, basic_in = arch.decoder_channels(j)
        yield from block_layers(arch, f"decoders.{j}.basic_module", basic_in, skip, False)


def groups_for(channels: int, num_groups: int) -> int:
    """The reference's rule: fewer channels than groups -> a single group."""
    return 1 if channels < num_groups else num_groups


def group_norm_problem(arch: Arch) -> str | None:
    """The first GroupNorm whose channel count num_groups does not divide, as a message."""
    if "g" not in arch.layer_order:
        return None
    for layer in conv_layers(arch):
        if "g" not in layer.order:
            continue
        ch = layer.norm_channels("g")
        groups = groups_for(ch, arch.num_groups)
        if ch % groups:
            fits = next(g for g in range(arch.num_groups, 0, -1) if all_divisible(arch, g))
            return (
                f"model.num_groups: GroupNorm in {layer.path} has {ch} channels, which "
                f"{arch.num_groups} groups do not divide (every GroupNorm with at least "
                f"num_groups channels must be divisible by it). Set num_groups to {fits} (the "
                "largest value that fits every layer) or change f_maps"
            )
    return None


def all_divisible(arch: Arch, groups: int) -> bool:
    for layer in conv_layers(arch):
        if "g" in layer.order:
            ch = layer.norm_channels("g")
            if ch % groups_for(ch, groups):
                return False
    return True


# -- shapes -------------------------------------------------------------------------------------
def patch_multiple(arch: Arch) -> tuple[int, ...]:
    """Per-axis size a patch should be a multiple of, so every pooling divides evenly."""
    return tuple(p ** (arch.levels - 1) for p in arch.pool_kernel)


def _conv(n: int, k: int, p: int) -> int:
    return n + 2 * p - k + 1


def walk_shape(arch: Arch, spatial: Sequence[int]) -> tuple[list[tuple[int, ...]], str | None]:
    """Spatial size after each encoder/decoder, and the first place a size drops below 1."""
    sizes: list[tuple[int, ...]] = []
    cur = list(spatial)
    convs_per_block = 2
    pad = arch.block_padding
    for i in range(arch.levels):
        if i > 0:
            if any(n < p for n, p in zip(cur, arch.pool_kernel)):
                return sizes, f"encoders.{i} (pooling {list(arch.pool_kernel)} of size {cur})"
            cur = [n // p for n, p in zip(cur, arch.pool_kernel)]
        for _ in range(convs_per_block):
            cur = [_conv(n, k, p) for n, k, p in zip(cur, arch.conv_kernel, pad)]
        if min(cur) < 1:
            return sizes, f"encoders.{i} (convolutions shrink the size to {cur})"
        sizes.append(tuple(cur))
    skips = sizes[:-1][::-1]
    for j, skip in enumerate(skips):
        cur = list(skip)
        for _ in range(convs_per_block):
            cur = [_conv(n, k, p) for n, k, p in zip(cur, arch.conv_kernel, pad)]
        if min(cur) < 1:
            return sizes, f"decoders.{j} (convolutions shrink the size to {cur})"
        sizes.append(tuple(cur))
    return sizes, None


def receptive_field(arch: Arch) -> tuple[int, ...]:
    """Receptive field (voxels per axis) of one output voxel, the largest over grid offsets.

    Follows the input interval each output depends on backwards through every conv, pooling,
    upsampling and skip, so interpolation and transposed convs are counted exactly.
    """
    return tuple(_axis_receptive_field(arch, axis) for axis in range(arch.dims))


def _axis_receptive_field(arch: Arch, axis: int) -> int:
    k, p = arch.conv_kernel[axis], arch.pool_kernel[axis]
    pad = arch.block_padding[axis]
    top = arch.levels - 1

    def convs(a: int, b: int) -> tuple[int, int]:
        for _ in range(2):
            a, b = a - pad, b - pad + k - 1
        return a, b

    def up(a: int, b: int) -> tuple[int, int]:
        if arch.upsample == "deconv":
            half = k // 2
            return math.ceil((a + half - k + 1) / p), (b + half) // p
        if arch.upsample in ("linear", "bilinear", "trilinear"):
            return math.floor((a + 0.5) / p - 0.5), math.ceil((b + 0.5) / p - 0.5)
        return a // p, b // p  # nearest / area: one source per output

    def encoder(level: int, a: int, b: int) -> tuple[int, int]:
        a, b = convs(a, b)
        if level == 0:
            return a, b
        return encoder(level - 1, a * p, b * p + p - 1)

    def decoder(level: int, a: int, b: int) -> tuple[int, int]:
        if level == top:
            return encoder(top, a, b)
        a, b = convs(a, b)
        skip = encoder(level, a, b)
        deep = decoder(level + 1, *up(a, b))
        return min(skip[0], deep[0]), max(skip[1], deep[1])

    best = 1
    for offset in range(p**top):
        lo, hi = decoder(0, offset, offset)
        best = max(best, hi - lo + 1)
    return best
