"""Validated parameters of the U-Net family (the reference's, plus what it hard-codes).

Every reference constructor argument is here with its default. Where the reference fixes a
value inside the network (kernel sizes, pooling, SE type) the field's default is that value,
so a reference config builds the reference network exactly. Impossible combinations fail here,
with the config key and the fix, instead of deep inside torch at run time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from unet_core.interfaces import ComponentConfig
from unet_plugins.models import plan

UpsampleMode = Literal[
    "default", "nearest", "linear", "bilinear", "trilinear", "area", "deconv", "none"
]


class UNetConfig(ComponentConfig):
    """Parameters shared by every model of the family."""

    spatial_dims: ClassVar[int] = 3
    block: ClassVar[str] = "double"

    in_channels: int = Field(..., ge=1, description="Channels of the input volume.")
    out_channels: int = Field(
        ..., ge=1, description="Output channels (classes or masks; the loss decides how)."
    )
    final_sigmoid: bool = Field(
        True,
        description="Final activation in eval mode: True -> sigmoid per channel, "
        "False -> softmax over channels.",
    )
    f_maps: int | list[int] = Field(
        64,
        description="Features per level: an int f gives [f, 2f, 4f, ...] (num_levels entries); "
        "a list is used as is.",
    )
    layer_order: str = Field(
        "gcr",
        description="Layers of each conv unit, in order: c conv, g GroupNorm, b BatchNorm, "
        "r ReLU, l LeakyReLU, e ELU, d Dropout, D Dropout2d. A norm before 'c' normalises the "
        "conv's input channels.",
    )
    num_groups: int = Field(
        8, ge=1, description="GroupNorm groups; layers with fewer channels use one group."
    )
    num_levels: int = Field(
        4, ge=1, description="Encoder levels when f_maps is an int (at least 2)."
    )
    is_segmentation: bool = Field(
        True,
        description="Apply the final sigmoid/softmax in eval mode; False for regression "
        "(raw output).",
    )
    conv_padding: int | list[int] = Field(
        1,
        description="Zero padding of the DoubleConv convolutions (residual blocks always pad "
        "to keep the size). (conv_kernel_size-1)//2 keeps the size.",
    )
    conv_upscale: int = Field(
        2,
        ge=1,
        description="Encoder DoubleConv: 1 -> its first conv outputs all the level's features; "
        "otherwise half of them (never fewer than its input).",
    )
    upsample: UpsampleMode | None = Field(
        "default",
        description="Decoder upsampling: 'default' (nearest + concat for UNets, transposed "
        "conv + sum for residual UNets), an interpolation mode ('nearest', 'bilinear' for 2D, "
        "'trilinear' for 3D, 'area'), 'deconv' (transposed conv + concat), or 'none'/null.",
    )
    dropout_prob: float | list[float] = Field(
        0.1,
        description="Dropout probability, used only if layer_order has 'd' or 'D'; "
        "a 2-item list sets the two convs of a block separately.",
    )
    conv_kernel_size: int | list[int] = Field(
        3, description="Kernel of every conv (odd; per axis as a list). Reference: fixed 3."
    )
    pool_kernel_size: int | list[int] = Field(
        2,
        description="Pooling window and decoder upsampling factor (per axis as a list, e.g. "
        "[1, 2, 2] for anisotropic data). Reference: fixed 2.",
    )
    pool_type: Literal["max", "avg"] = Field(
        "max", description="Encoder pooling. Reference: fixed max."
    )

    # -- derived -------------------------------------------------------------------------------
    def features(self) -> list[int]:
        """f_maps as the list of features per level."""
        if isinstance(self.f_maps, int):
            return [self.f_maps * 2**k for k in range(self.num_levels)]
        return list(self.f_maps)

    def arch(self) -> plan.Arch:
        """The architecture these parameters describe."""
        dims = self.spatial_dims
        upsample, join = plan.resolve_upsample(self.upsample, self.block != "double")
        drop = self.dropout_prob
        pair = (drop[0], drop[1]) if isinstance(drop, list) else (drop, drop)
        return plan.Arch(
            dims=dims,
            block=self.block,
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            f_maps=tuple(self.features()),
            layer_order=self.layer_order,
            num_groups=self.num_groups,
            conv_kernel=_per_axis(self.conv_kernel_size, dims),
            conv_padding=_per_axis(self.conv_padding, dims),
            pool_kernel=_per_axis(self.pool_kernel_size, dims),
            pool_type=self.pool_type,
            conv_upscale=self.conv_upscale,
            upsample=upsample,
            join=join,
            dropout=pair,
        )

    # -- validation ----------------------------------------------------------------------------
    @model_validator(mode="after")
    def _check(self) -> UNetConfig:
        for problem in (
            self._layer_order_problem(),
            self._f_maps_problem(),
            self._per_axis_problem(),
            self._upsample_problem(),
            self._dropout_problem(),
        ):
            if problem:
                raise ValueError(problem)
        problem = plan.group_norm_problem(self.arch())
        if problem:
            raise ValueError(problem)
        if not isinstance(self.f_maps, int) and "num_levels" not in self.model_fields_set:
            # a list sets the levels: say so, so that a dump (checkpoint, model package)
            # validates again instead of pairing the list with the default num_levels
            self.num_levels = len(self.f_maps)
        return self

    def _layer_order_problem(self) -> str | None:
        order = self.layer_order
        bad = sorted({ch for ch in order if ch not in plan.LAYER_LETTERS})
        valid = ", ".join(f"{k} ({v})" for k, v in plan.LAYER_LETTERS.items())
        if bad:
            return f"model.layer_order {order!r}: unknown letter(s) {bad}; valid: {valid}"
        if "c" not in order:
            return f"model.layer_order {order!r} has no 'c': every unit needs its convolution"
        if order[0] in plan.ACTIVATION_LETTERS:
            return (
                f"model.layer_order {order!r} starts with the activation {order[0]!r}; "
                "start with 'c' or a norm (e.g. 'gcr', 'cbr')"
            )
        dup = sorted({ch for ch in order if order.count(ch) > 1})
        if dup:
            return f"model.layer_order {order!r} repeats {dup}; use each letter at most once"
        return None

    def _f_maps_problem(self) -> str | None:
        if isinstance(self.f_maps, int):
            if self.f_maps < 1:
                return f"model.f_maps must be positive, got {self.f_maps}"
            if self.num_levels < 2:
                return (
                    "model.num_levels must be at least 2 (a U-Net needs a skip), "
                    f"got {self.num_levels}"
                )
            return None
        if len(self.f_maps) < 2 or min(self.f_maps) < 1:
            return (
                f"model.f_maps {self.f_maps}: a list needs at least 2 positive entries "
                "(one per level)"
            )
        if "num_levels" in self.model_fields_set and self.num_levels != len(self.f_maps):
            return (
                f"model.f_maps has {len(self.f_maps)} levels but model.num_levels is "
                f"{self.num_levels}; drop num_levels (a list sets the levels) or make them agree"
            )
        return None

    def _per_axis_problem(self) -> str | None:
        dims = self.spatial_dims
        for key, minimum in (("conv_kernel_size", 1), ("pool_kernel_size", 1), ("conv_padding", 0)):
            value = getattr(self, key)
            if isinstance(value, list) and len(value) != dims:
                return (
                    f"model.{key} {value} has {len(value)} entries; this {dims}D model needs "
                    f"one int or {dims}"
                )
            if min(_per_axis(value, dims)) < minimum:
                return f"model.{key} must be >= {minimum}, got {value}"
        if any(k % 2 == 0 for k in _per_axis(self.conv_kernel_size, dims)):
            return (
                "model.conv_kernel_size must be odd so padding can keep the size, "
                f"got {self.conv_kernel_size}"
            )
        return None

    def _upsample_problem(self) -> str | None:
        mode = self.upsample
        wanted = {2: "bilinear", 3: "trilinear"}[self.spatial_dims]
        if mode in ("linear", "bilinear", "trilinear") and mode != wanted:
            return (
                f"model.upsample {mode!r} interpolates "
                f"{ {'linear': '1D', 'bilinear': '2D', 'trilinear': '3D'}[mode] } data; "
                f"this {self.spatial_dims}D model needs {wanted!r} (or 'nearest', 'area', 'deconv')"
            )
        if mode in (None, "none") and any(
            p != 1 for p in _per_axis(self.pool_kernel_size, self.spatial_dims)
        ):
            return (
                "model.upsample 'none' leaves decoder inputs smaller than the skip features "
                f"(pool_kernel_size {self.pool_kernel_size}); use 'default' or 'nearest', or set "
                "pool_kernel_size to 1"
            )
        return None

    def _dropout_problem(self) -> str | None:
        drop = self.dropout_prob
        values = drop if isinstance(drop, list) else [drop]
        if isinstance(drop, list) and len(drop) != 2:
            return f"model.dropout_prob list must have 2 items (one per conv), got {drop}"
        if any(not 0.0 <= p <= 1.0 for p in values):
            return f"model.dropout_prob must be within [0, 1], got {drop}"
        return None


class ResidualUNetConfig(UNetConfig):
    """Residual U-Nets: ResNet blocks, transposed-conv upsampling and summed skips by default."""

    block: ClassVar[str] = "residual"
    num_levels: int = Field(5, ge=1, description="Encoder levels when f_maps is an int.")


class ResidualUNetSEConfig(ResidualUNetConfig):
    """Residual U-Net whose blocks end in a squeeze-and-excitation module."""

    block: ClassVar[str] = "residual_se"
    se_module: Literal["scse", "cse", "sse"] = Field(
        "scse",
        description="SE type: 'scse' (max of channel and spatial SE), 'cse' (channel) or "
        "'sse' (spatial). Reference: fixed scse.",
    )
    se_reduction_ratio: int = Field(
        1, ge=1, description="Channel SE bottleneck: C -> C // ratio. Reference: fixed 1."
    )


class UNet2DConfig(UNetConfig):
    spatial_dims: ClassVar[int] = 2


class ResidualUNet2DConfig(ResidualUNetConfig):
    spatial_dims: ClassVar[int] = 2


def _per_axis(value: int | Sequence[int], dims: int) -> tuple[int, ...]:
    return (value,) * dims if isinstance(value, int) else tuple(value)


def validated(config_cls: type[UNetConfig], config: Any, name: str = "model") -> UNetConfig:
    """A Config instance from a Config, a mapping (``name`` ignored) or raise ConfigError."""
    from pydantic import ValidationError

    from unet_core.errors import ConfigError
    from unet_core.registry import format_validation_error

    if isinstance(config, config_cls):
        return config
    params = dict(config.model_dump() if hasattr(config, "model_dump") else config)
    params.pop("name", None)
    try:
        return config_cls.model_validate(params)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"model {name!r}", exc)) from None


# -- config-time checks (torch-free: ``unet config validate`` runs them) ------------------------
def patch_shape_problem(
    config_cls: type[UNetConfig],
    name: str,
    config: Any,
    patch_shape: Sequence[int],
    *,
    strict: bool = False,
) -> str | None:
    """A message if model ``name`` cannot take ``patch_shape`` (Z,Y,X, or Y,X for 2D), else None.

    Always checked: the number of axes (a 2D model needs z == 1) and that every level keeps
    at least one voxel. ``strict`` also requires multiples of the patch multiple; the
    reference runs other sizes (decoders resize to the skip size), so that is advice only.
    """
    arch = validated(config_cls, config, name).arch()
    shape = [int(n) for n in patch_shape]
    if arch.dims == 2:
        if len(shape) == 3 and shape[0] != 1:
            return (
                f"{name} is a 2D model but patch_shape {shape} has z = {shape[0]}; use a "
                f"patch with z = 1 (e.g. [1, {shape[1]}, {shape[2]}]) or a 3D model such "
                "as UNet3D"
            )
        if len(shape) not in (2, 3):
            return f"patch_shape {shape} must have 3 entries (z, y, x) with z = 1 for {name}"
    elif len(shape) != 3:
        return f"patch_shape {shape} must have 3 entries (z, y, x) for {name}"
    spatial = spatial_axes(config_cls, shape)
    multiple = plan.patch_multiple(arch)
    _, problem = plan.walk_shape(arch, spatial)
    if problem:
        need = [m for m in multiple]
        return (
            f"patch_shape {shape} is too small for {name} with {arch.levels} levels: the "
            f"size drops to zero at {problem}; use at least {need} per axis "
            f"({'z, ' if arch.dims == 3 else ''}y, x) or fewer levels"
        )
    if strict and any(n % m for n, m in zip(spatial, multiple)):
        good = [max(m, round(n / m) * m) for n, m in zip(spatial, multiple)]
        return (
            f"patch_shape {shape}: spatial sizes {spatial} are not multiples of "
            f"{list(multiple)} "
            f"(pool_kernel_size ** (num_levels - 1)), so pooling drops voxels and upsampled "
            f"features misalign with the skips; e.g. use {good}"
        )
    return None


def spatial_axes(config_cls: type[UNetConfig], shape: Sequence[int]) -> list[int]:
    """The model's spatial sizes of a patch shape (the trailing Y,X of Z,Y,X for 2D models)."""
    dims = config_cls.spatial_dims
    shape = [int(n) for n in shape]
    return shape[-dims:] if len(shape) > dims else shape
