"""A small 3D U-Net whose skip connections pass through additive attention gates.

Attention gates (Oktay et al. 2018, "Attention U-Net: Learning Where to Look for the Pancreas")
let the coarser decoder features decide, voxel by voxel, how much of each skip connection
reaches the decoder. That helps where the foreground is small and sparse (nuclei, synapses,
vesicles) in a large background. The gate here works at the coarse resolution (a strided 2x2x2
conv brings the skip down to the gating signal's size) and its one-channel coefficient map is
upsampled trilinearly, so it costs little.

Any input size works: the input is padded at the far end of each axis to a multiple of
``2 ** (num_levels - 1)`` and the output is cropped back, so the output always has the input's
spatial shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig


def _conv_block(cin: int, cout: int, groups: int) -> nn.Sequential:
    """Two (3x3x3 conv, GroupNorm, ReLU) units; GroupNorm keeps batch size 1 stable."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, bias=False),
        nn.GroupNorm(min(groups, cout), cout),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(min(groups, cout), cout),
        nn.ReLU(inplace=True),
    )


class AttentionGate(nn.Module):
    """Scales a skip connection by a [0, 1] map computed from it and the coarser features."""

    def __init__(self, skip_channels: int, gate_channels: int) -> None:
        super().__init__()
        inter = max(1, skip_channels // 2)
        self.skip_proj = nn.Conv3d(skip_channels, inter, kernel_size=2, stride=2, bias=False)
        self.gate_proj = nn.Conv3d(gate_channels, inter, kernel_size=1)
        self.score = nn.Conv3d(inter, 1, kernel_size=1)

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The (N, 1, *skip spatial) attention map in [0, 1]."""
        coarse = torch.sigmoid(self.score(F.relu(self.skip_proj(skip) + self.gate_proj(gate))))
        return F.interpolate(coarse, size=skip.shape[2:], mode="trilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.coefficients(skip, gate)


class AttentionGateUNet3D(nn.Module):
    """A compact 3D U-Net with attention-gated skip connections, for sparse foreground.

    ``logits(x)`` returns raw logits; ``forward`` returns them in train mode and
    ``final_activation(logits)`` (sigmoid, softmax over channels, or identity for regression)
    in eval mode. Takes (N, in_channels, Z, Y, X) of any size.
    """

    class Config(ComponentConfig):
        """Parameters of AttentionGateUNet3D."""

        in_channels: int = Field(..., ge=1, description="Channels of the input volume.")
        out_channels: int = Field(
            ..., ge=1, description="Output channels (masks or classes; the loss decides how)."
        )
        f_maps: int = Field(
            16, ge=1, description="Features at the first level; doubled at each deeper level."
        )
        num_levels: int = Field(
            3, ge=2, le=6, description="Resolution levels (each deeper one halves Z, Y and X)."
        )
        num_groups: int = Field(
            4, ge=1, description="GroupNorm groups; must divide f_maps (and so every level)."
        )
        attention: bool = Field(
            True,
            description="Gate the skip connections; false gives a plain U-Net (for ablations).",
        )
        pad_mode: Literal["replicate", "constant"] = Field(
            "replicate",
            description="How inputs are padded up to a multiple of 2**(num_levels-1) voxels "
            "per axis: repeat the edge voxels, or zeros.",
        )
        final_sigmoid: bool = Field(
            True,
            description="Eval-mode activation: true -> sigmoid per channel, false -> softmax "
            "over channels.",
        )
        is_segmentation: bool = Field(
            True,
            description="Apply the final activation in eval mode; false for regression "
            "(raw output).",
        )

        @model_validator(mode="after")
        def _groups_divide_features(self) -> AttentionGateUNet3D.Config:
            if self.f_maps % self.num_groups:
                raise ValueError(
                    f"f_maps ({self.f_maps}) must be a multiple of num_groups "
                    f"({self.num_groups}) so that GroupNorm splits every level evenly; e.g. "
                    f"set num_groups to {_largest_divisor(self.f_maps, self.num_groups)} or "
                    f"f_maps to {self.f_maps + (-self.f_maps) % self.num_groups}"
                )
            return self

    @classmethod
    def from_config(cls, config: Config, **context: Any) -> AttentionGateUNet3D:
        """How ``registry.create("models", spec)`` builds it (models get no context)."""
        return cls(**config.model_dump())

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        f_maps: int = 16,
        num_levels: int = 3,
        num_groups: int = 4,
        attention: bool = True,
        pad_mode: str = "replicate",
        final_sigmoid: bool = True,
        is_segmentation: bool = True,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_dims = 3
        self.is_segmentation = is_segmentation
        self.final_sigmoid = final_sigmoid
        self.pad_mode = pad_mode
        self.multiple = 2 ** (num_levels - 1)
        feats = [f_maps * 2**k for k in range(num_levels)]
        self.encoders = nn.ModuleList(
            _conv_block(cin, cout, num_groups)
            for cin, cout in zip([in_channels, *feats[:-1]], feats)
        )
        deep = list(reversed(feats))  # deepest first
        self.upsamplers = nn.ModuleList(
            nn.ConvTranspose3d(c_deep, c_skip, kernel_size=2, stride=2)
            for c_deep, c_skip in zip(deep, deep[1:])
        )
        self.gates = nn.ModuleList(
            AttentionGate(c_skip, c_deep) if attention else nn.Identity()
            for c_deep, c_skip in zip(deep, deep[1:])
        )
        self.decoders = nn.ModuleList(
            _conv_block(2 * c_skip, c_skip, num_groups) for c_skip in deep[1:]
        )
        self.final_conv = nn.Conv3d(f_maps, out_channels, kernel_size=1)

    # -- the model contract ---------------------------------------------------------------------
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw network output of the input's spatial shape, whatever the mode."""
        self._check_input(x)
        size = x.shape[2:]
        pad = [(-n) % self.multiple for n in size]
        if any(pad):
            x = F.pad(x, [p for n in reversed(pad) for p in (0, n)], mode=self.pad_mode)
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, gate, decoder in zip(self.upsamplers, self.gates, self.decoders):
            skip = skips.pop()
            gated = skip if isinstance(gate, nn.Identity) else gate(skip, x)
            x = decoder(torch.cat([gated, up(x)], dim=1))
        out: torch.Tensor = self.final_conv(x)
        crop = (slice(None), slice(None), *(slice(0, n) for n in size))
        return out[crop]

    def final_activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid, softmax over channels, or identity (regression)."""
        if not self.is_segmentation:
            return logits
        return torch.sigmoid(logits) if self.final_sigmoid else torch.softmax(logits, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits in train mode; ``final_activation(logits)`` in eval mode."""
        logits = self.logits(x)
        return logits if self.training else self.final_activation(logits)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise DataError(
                f"AttentionGateUNet3D expects input (N, C, Z, Y, X) with C = in_channels = "
                f"{self.in_channels}, got shape {tuple(x.shape)}. Set model.in_channels to the "
                "data's channels, or add a channel axis (ToTensor with expand_dims: true)."
            )

    # -- optional config-time helpers that `unet config validate` and `unet models` use -----
    @classmethod
    def patch_multiple(cls, config: Config | Mapping[str, Any]) -> tuple[int, int, int]:
        """Patch sizes that are multiples of this need no padding."""
        cfg = config if isinstance(config, cls.Config) else cls.Config.model_validate(config)
        m = 2 ** (cfg.num_levels - 1)
        return (m, m, m)

    @classmethod
    def check_patch_shape(
        cls, config: Config | Mapping[str, Any], patch_shape: Sequence[int], *, strict: bool = False
    ) -> str | None:
        """A message if ``patch_shape`` (Z, Y, X) cannot work, else None.

        Any size runs; ``strict`` also advises multiples of :meth:`patch_multiple`, since
        padding costs compute and the padded voxels carry no information.
        """
        shape = [int(n) for n in patch_shape]
        if len(shape) != 3:
            return f"patch_shape {shape} must have 3 entries (z, y, x) for AttentionGateUNet3D"
        multiple = cls.patch_multiple(config)
        if strict and any(n % m for n, m in zip(shape, multiple)):
            good = [max(m, -(-n // m) * m) for n, m in zip(shape, multiple)]
            return (
                f"patch_shape {shape} is padded to {good} inside AttentionGateUNet3D "
                f"(multiples of {list(multiple)}); use {good} to spend no compute on padding"
            )
        return None


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)
