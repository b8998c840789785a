"""The transforms' parameters, importable without scipy or scikit-image.

``unet config validate`` reads these through the Deferred entries of
:mod:`unet_plugins.transforms.specs`; the transform classes use the same models as their
``Config``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, field_validator, model_validator

from unet_core.config import VoxelSizeZYX
from unet_core.interfaces import ComponentConfig


# -- shared config fields ----------------------------------------------------------------------
def probability_field(default: float, what: str = "the transform") -> Any:
    return Field(default, ge=0.0, le=1.0, description=f"Probability that {what} is applied.")


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"expected [low, high] with low <= high, got {list(value)}")
    return value


#: A ``[low, high]`` range that a random parameter is drawn from.
FloatRange = Annotated[tuple[float, float], AfterValidator(_ordered)]


class TransformConfig(ComponentConfig):
    """Base of the built-in transforms' configs (unknown keys are errors)."""


class NoParametersConfig(ComponentConfig):
    """No parameters."""


# -- intensity ---------------------------------------------------------------------------------
def _range_field(default: tuple[float, float], what: str) -> Any:
    return Field(default, description=f"[low, high] range of {what}; drawn uniformly per sample.")


class RandomContrastConfig(TransformConfig):
    alpha: FloatRange = _range_field((0.5, 1.5), "the contrast factor")
    mean: float = Field(0.0, description="Intensity the contrast is scaled around.")
    execution_probability: float = probability_field(0.1)
    clip: FloatRange | Literal["input"] | None = Field(
        None,
        description="None: no clipping; [low, high]: clip to that range (the reference "
        "always used [-1, 1]); 'input': clip to the patch's own min/max.",
    )


class RandomGammaCorrectionConfig(TransformConfig):
    gamma: FloatRange = _range_field((0.5, 1.5), "gamma")
    execution_probability: float = probability_field(0.1)


class AdditiveGaussianNoiseConfig(TransformConfig):
    scale: FloatRange = _range_field((0.0, 1.0), "the noise standard deviation")
    execution_probability: float = probability_field(0.1)


class AdditivePoissonNoiseConfig(TransformConfig):
    lam: FloatRange = _range_field((0.0, 1.0), "the Poisson rate")
    execution_probability: float = probability_field(0.1)


class GaussianBlur3DConfig(TransformConfig):
    sigma: FloatRange = _range_field((0.1, 2.0), "the blur sigma (voxels)")
    execution_probability: float = probability_field(0.5)


# -- spatial -----------------------------------------------------------------------------------
RotateMode = Literal[
    "reflect", "grid-mirror", "constant", "grid-constant", "nearest", "mirror", "grid-wrap", "wrap"
]


class RandomFlipConfig(TransformConfig):
    axis_prob: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Probability of flipping each axis (the reference flipped when a uniform "
        "draw exceeded it, i.e. with 1-axis_prob; identical at the default 0.5).",
    )


class RandomRotateConfig(TransformConfig):
    angle_spectrum: int = Field(30, ge=0, description="Maximum absolute angle in degrees.")
    axes: list[tuple[int, int]] = Field(
        default_factory=lambda: [(1, 0), (2, 1), (2, 0)],
        min_length=1,
        description="Axis pairs (0=Z, 1=Y, 2=X) of the rotation planes; one is picked at "
        "random per sample. [[2, 1]] rotates in the (Y,X) plane only (anisotropic data).",
    )
    mode: RotateMode = Field("reflect", description="scipy.ndimage.rotate boundary mode.")
    order: int = Field(
        0, ge=0, le=5, description="Spline interpolation order (0 = nearest, for labels)."
    )
    cval: float = Field(-1.0, description="Fill value for mode 'constant' (reference: -1).")

    @field_validator("axes")
    @classmethod
    def _axes(cls, axes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for pair in axes:
            if not all(0 <= a <= 2 for a in pair) or pair[0] == pair[1]:
                raise ValueError(
                    f"each entry of axes must be two different spatial axes from 0 (Z), "
                    f"1 (Y), 2 (X), got {list(pair)}"
                )
        return axes


class ElasticDeformationConfig(TransformConfig):
    spline_order: int = Field(
        ..., ge=0, le=5, description="Interpolation order: 0 for labels, 3 for raw data."
    )
    alpha: float = Field(2000, description="Scale of the displacement fields.")
    sigma: float = Field(50, gt=0, description="Gaussian smoothing of the displacement noise.")
    execution_probability: float = probability_field(0.1, "the deformation")
    apply_3d: bool = Field(True, description="Also displace along Z.")


class CropToFixedConfig(TransformConfig):
    size: tuple[int, int] = Field((256, 256), description="Output (Y, X) extent.")
    centered: bool = Field(False, description="Crop/pad around the centre (validation).")

    @field_validator("size")
    @classmethod
    def _positive(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 1:
            raise ValueError(f"size must be two positive ints (Y, X), got {list(size)}")
        return size


# -- normalization -----------------------------------------------------------------------------
class StandardizeConfig(TransformConfig):
    eps: float = Field(1e-10, gt=0, description="Lower bound of the divisor.")
    mean: float | None = Field(None, description="Fixed mean (default: stats or per patch).")
    std: float | None = Field(None, description="Fixed std (default: stats or per patch).")
    channelwise: bool = Field(False, description="Per-channel statistics for 4D input.")

    @model_validator(mode="after")
    def _both(self) -> StandardizeConfig:
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must be given together (or both left out)")
        return self


class PercentileNormalizerConfig(TransformConfig):
    pmin: float = Field(1.0, ge=0, le=100, description="Lower percentile (0-100).")
    pmax: float = Field(99.6, ge=0, le=100, description="Upper percentile (0-100).")
    channelwise: bool = Field(False, description="Per-channel percentiles for 4D input.")
    eps: float = Field(1e-10, gt=0, description="Added to the divisor.")

    @model_validator(mode="after")
    def _ordered(self) -> PercentileNormalizerConfig:
        if self.pmin >= self.pmax:
            raise ValueError(f"pmin ({self.pmin}) must be smaller than pmax ({self.pmax})")
        return self


class NormalizeConfig(TransformConfig):
    min_value: float | None = Field(None, description="Value mapped to -1 (or 0).")
    max_value: float | None = Field(None, description="Value mapped to 1.")
    norm01: bool = Field(False, description="Scale to [0, 1] instead of [-1, 1].")
    eps: float = Field(1e-10, gt=0, description="Added to the divisor.")

    @model_validator(mode="after")
    def _ordered(self) -> NormalizeConfig:
        lo, hi = self.min_value, self.max_value
        if lo is not None and hi is not None and hi <= lo:
            raise ValueError(f"max_value ({hi}) must be greater than min_value ({lo})")
        return self


# -- to tensor ---------------------------------------------------------------------------------
#: Torch-style names whose numpy meaning differs by platform or from torch; pinned here.
DTYPE_ALIASES = {"long": "int64", "int64": "int64", "half": "float16"}


def to_numpy_dtype(name: str) -> np.dtype:
    return np.dtype(DTYPE_ALIASES.get(name, name))


class ToTensorConfig(TransformConfig):
    expand_dims: bool = Field(
        ..., description="Add a leading channel axis when the input is 3D (Z,Y,X)."
    )
    dtype: str = Field(
        "float32",
        description="numpy dtype name of the tensor, e.g. float32, int64 ('long' is int64 "
        "on every platform).",
    )
    normalize: bool = Field(False, description="Min-max scale to [0, 1] first.")

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str) -> str:
        try:
            dtype = to_numpy_dtype(v)
        except TypeError:
            raise ValueError(
                f"dtype {v!r} is not a numpy dtype name; use e.g. float32, float16, int64"
            ) from None
        if dtype.kind not in "biuf":
            raise ValueError(f"dtype {v!r} cannot become a tensor; use a number type")
        return v


# -- labels --------------------------------------------------------------------------------------
def _offsets_ok(offsets: list[int] | None, key: str) -> list[int] | None:
    """Offsets are positive; xy offsets are also distinct (Z offsets may repeat)."""
    if offsets is None:
        return None
    if not offsets or any(o <= 0 for o in offsets):
        raise ValueError(f"{key} must be a non-empty list of positive ints, got {offsets}")
    if key != "z_offsets" and len(set(offsets)) != len(offsets):
        raise ValueError(f"{key} must not repeat an offset, got {offsets}")
    return offsets


_IGNORE = Field(None, description="Label value copied unchanged into every output channel.")
_APPEND = Field(False, description="Append the input label as the last channel.")
BoundaryMode = Literal["thick", "inner", "outer"]


class StandardLabelToBoundaryConfig(TransformConfig):
    ignore_index: int | None = _IGNORE
    append_label: bool = _APPEND
    mode: BoundaryMode = Field(
        "thick", description="skimage find_boundaries mode (connectivity 2)."
    )
    foreground: bool = Field(False, description="Prepend a foreground (label > 0) channel.")


class BlobsToMaskConfig(TransformConfig):
    append_label: bool = _APPEND
    boundary: bool = Field(False, description="Add the objects' outer boundary.")
    cross_entropy: bool = Field(
        False, description="With boundary: one class map (0 bg, 1 object, 2 boundary)."
    )


class LabelToDistanceConfig(TransformConfig):
    foreground: bool = Field(True, description="First channel: foreground (label > 0).")
    boundary: bool = Field(
        False, description="Then a boundary channel (find_boundaries, connectivity 2)."
    )
    boundary_mode: BoundaryMode = Field("thick", description="Mode of the boundary channel.")
    distance: bool = Field(
        True,
        description="Then the distance of each object voxel to the nearest other label "
        "(background or another object), divided by the object's largest distance: 1 at "
        "its centre, falling towards its border, 0 outside.",
    )
    sampling: VoxelSizeZYX = Field(
        default_factory=lambda: [1.0, 1.0, 1.0],
        description="Voxel size (Z, Y, X) of the distance (anisotropic data).",
    )
    ignore_index: int | None = _IGNORE
    append_label: bool = _APPEND

    @model_validator(mode="after")
    def _some_channel(self) -> LabelToDistanceConfig:
        if not (self.foreground or self.boundary or self.distance):
            raise ValueError("enable at least one of foreground, boundary, distance")
        return self


class LabelToAffinitiesConfig(TransformConfig):
    offsets: list[int] = Field(..., description="Positive, distinct offsets (X and Y).")
    ignore_index: int | None = _IGNORE
    append_label: bool = _APPEND
    aggregate_affinities: bool = Field(
        False, description="OR the X, Y, Z channels of each offset into one channel."
    )
    z_offsets: list[int] | None = Field(
        None, description="Z offsets, one per offset (default: the same as offsets)."
    )

    @field_validator("offsets", "z_offsets")
    @classmethod
    def _valid(cls, v: list[int] | None, info: Any) -> list[int] | None:
        return _offsets_ok(v, info.field_name)

    @model_validator(mode="after")
    def _same_length(self) -> LabelToAffinitiesConfig:
        if self.z_offsets is not None and len(self.z_offsets) != len(self.offsets):
            raise ValueError(
                f"z_offsets needs one entry per offset ({len(self.offsets)}), "
                f"got {len(self.z_offsets)}"
            )
        return self


class LabelToZAffinitiesConfig(TransformConfig):
    offsets: list[int] = Field(..., description="Positive, distinct Z offsets.")
    ignore_index: int | None = _IGNORE
    append_label: bool = _APPEND

    @field_validator("offsets")
    @classmethod
    def _valid(cls, v: list[int]) -> list[int] | None:
        return _offsets_ok(v, "offsets")


class RandomLabelToAffinitiesConfig(TransformConfig):
    max_offset: int = Field(10, ge=1, description="Offsets are drawn from 1..max_offset.")
    ignore_index: int | None = _IGNORE
    append_label: bool = _APPEND
    z_offset_scale: int = Field(2, ge=1, description="Divisor of offsets along Z.")


class _OffsetsConfig(TransformConfig):
    xy_offsets: list[int] = Field(..., description="Positive, distinct X/Y affinity offsets.")
    z_offsets: list[int] = Field(..., description="Z affinity offsets, one per xy offset.")
    append_label: bool = _APPEND
    ignore_index: int | None = _IGNORE

    @field_validator("xy_offsets", "z_offsets")
    @classmethod
    def _valid(cls, v: list[int], info: Any) -> list[int] | None:
        return _offsets_ok(v, info.field_name)

    @model_validator(mode="after")
    def _same_length(self) -> _OffsetsConfig:
        if len(self.z_offsets) != len(self.xy_offsets):
            raise ValueError(
                f"z_offsets needs one entry per xy_offset ({len(self.xy_offsets)}), "
                f"got {len(self.z_offsets)}"
            )
        return self


class LabelToBoundaryAndAffinitiesConfig(_OffsetsConfig):
    mode: BoundaryMode = Field("thick", description="find_boundaries mode.")
    foreground: bool = Field(False, description="Prepend a foreground channel.")


class LabelToMaskAndAffinitiesConfig(_OffsetsConfig):
    background: int = Field(0, description="Labels above this value are foreground.")


class RelabelConfig(TransformConfig):
    append_original: bool = Field(False, description="Stack the original label behind.")
    run_cc: bool = Field(True, description="Label connected components first.")
    ignore_label: int | None = Field(
        None, description="Value treated as background by the connected components."
    )

    @model_validator(mode="after")
    def _needs_original(self) -> RelabelConfig:
        if self.ignore_label is not None and not self.append_original:
            raise ValueError(
                "ignore_label needs append_original: true, so the ignored region can still "
                "be found in the output"
            )
        return self


def rotate90_patch_problem(config: Any, patch_shape: Any, batch_size: int) -> str | None:
    """RandomRotate90 turns the (Y, X) plane: a non-square plane changes shape, and the
    samples of one batch, each turned its own way, can then no longer be stacked."""
    y, x = (int(v) for v in tuple(patch_shape)[-2:])
    if y == x or batch_size <= 1:
        return None
    return (
        f"RandomRotate90 turns the (Y, X) plane, so a {y}x{x} patch becomes {x}x{y} in some "
        f"samples and a batch of {batch_size} cannot be stacked. Use a square patch (Y = X), "
        "loaders.batch_size: 1, or leave RandomRotate90 out"
    )
