"""Patch grids over a volume: the reference's ``SliceBuilder`` and ``FilterSliceBuilder``.

Positions and counts are the reference's: on each axis starts go 0, stride, 2*stride, ...
while start + patch <= size, plus one patch flush with the end if the last one stops short.
What changes is the failure mode: a volume smaller than the patch, a patch smaller than
64 in Y/X (unless ``skip_shape_check``) or a filter that keeps no patch is a one-paragraph
error instead of an assert or an unpacking crash, and the label is read patch by patch from
the array-like it is given (an h5py dataset is never loaded whole).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator

from unet_core.config import ShapeZYX
from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig
from unet_core.tiling import axis_starts as grid_starts

log = logging.getLogger(__name__)

Slices = list[tuple[slice, ...]]
Shape3 = tuple[int, int, int]


def build_slices(shape: tuple[int, ...], patch: Shape3, stride: Shape3) -> Slices:
    """Patch slices of a (Z,Y,X) or (C,Z,Y,X) array, z-major; 4D gets a full channel slice."""
    spatial = tuple(shape[-3:])
    for axis, (n, k) in enumerate(zip(spatial, patch)):
        if n < k:
            raise DataError(
                f"The volume {spatial} (Z,Y,X) is smaller than slice_builder.patch_shape "
                f"{tuple(patch)} along {'ZYX'[axis]} ({n} < {k}). Use a patch_shape no larger "
                f"than the smallest input volume, or pad the data."
            )
    lead = (slice(0, shape[0]),) if len(shape) == 4 else ()
    zs, ys, xs = (grid_starts(n, k, s) for n, k, s in zip(spatial, patch, stride))
    return [
        (*lead, slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
        for z in zs
        for y in ys
        for x in xs
    ]


class SliceBuilder:
    """Regular grid of patches; label/weight share the raw slices when their shape is equal."""

    class Config(ComponentConfig):
        patch_shape: ShapeZYX = Field(..., description="Patch size (Z,Y,X).")
        stride_shape: ShapeZYX = Field(..., description="Step between patch starts (Z,Y,X).")
        halo_shape: ShapeZYX = Field(
            (0, 0, 0),
            description="Test phase: context added around each patch (mirrored at the volume "
            "border) and cropped from the prediction.",
        )
        skip_shape_check: bool = Field(
            False, description="Allow patches with Y or X below 64 (the reference's check)."
        )
        lazy_loader: bool | None = Field(
            None,
            description="Accepted for compatibility (the reference sets it internally); no "
            "effect: labels are always read patch by patch.",
        )

        @field_validator("patch_shape", "stride_shape")
        @classmethod
        def _positive(cls, v: Shape3) -> Shape3:
            if any(s < 1 for s in v):
                raise ValueError(f"every entry must be >= 1, got {list(v)}")
            return v

        @field_validator("halo_shape")
        @classmethod
        def _non_negative(cls, v: Shape3) -> Shape3:
            if any(s < 0 for s in v):
                raise ValueError(f"every entry must be >= 0, got {list(v)}")
            return v

        @model_validator(mode="after")
        def _min_yx(self) -> SliceBuilder.Config:
            if not self.skip_shape_check and min(self.patch_shape[1:]) < 64:
                raise ValueError(
                    f"patch_shape {list(self.patch_shape)} has Y or X below 64, which the "
                    f"reference does not allow; use Y,X >= 64 or set skip_shape_check: true "
                    f"if small patches are intended"
                )
            return self

    def __init__(
        self,
        raw: Any,
        label: Any = None,
        weight: Any = None,
        *,
        patch_shape: Shape3,
        stride_shape: Shape3,
        halo_shape: Shape3 = (0, 0, 0),
        skip_shape_check: bool = False,
        lazy_loader: bool | None = None,
    ) -> None:
        self.patch_shape: Shape3 = tuple(patch_shape)  # type: ignore[assignment]
        self.stride_shape: Shape3 = tuple(stride_shape)  # type: ignore[assignment]
        self.halo_shape: Shape3 = tuple(halo_shape)  # type: ignore[assignment]
        raw_spatial = tuple(raw.shape[-3:])
        for what, other in (("label", label), ("weight", weight)):
            if other is not None and tuple(other.shape[-3:]) != raw_spatial:
                raise DataError(
                    f"The raw volume is {raw_spatial} (Z,Y,X) but the {what} is "
                    f"{tuple(other.shape[-3:])}; raw and {what} must cover the same voxels."
                )
        self.raw_slices: Slices = build_slices(
            tuple(raw.shape), self.patch_shape, self.stride_shape
        )
        self.label_slices: Slices | None = self._companion(raw, label)
        self.weight_slices: Slices | None = self._companion(raw, weight)
        #: number of grid positions before any filtering
        self.total_patches = len(self.raw_slices)

    def _companion(self, raw: Any, other: Any) -> Slices | None:
        if other is None:
            return None
        if tuple(other.shape) == tuple(raw.shape):
            return self.raw_slices
        # the reference shared slices whenever the ndim matched, so a 3-channel label next to
        # a 1-channel raw lost two channels; its own slices keep all of its channels
        return build_slices(tuple(other.shape), self.patch_shape, self.stride_shape)

    @property
    def kept_fraction(self) -> float:
        return len(self.raw_slices) / self.total_patches if self.total_patches else 0.0


class FilterSliceBuilder(SliceBuilder):
    """Keeps a patch if its labelled fraction exceeds ``threshold`` or, by chance, with
    probability ``slack_acceptance`` (the draws come from ``RandomState(seed)`` in the order
    of the reference, so the same patches are kept)."""

    class Config(SliceBuilder.Config):
        threshold: float = Field(
            0.6, ge=0, le=1, description="Keep patches whose non-zero label fraction exceeds it."
        )
        slack_acceptance: float = Field(
            0.01, ge=0, le=1, description="Probability of keeping a patch below the threshold."
        )
        ignore_index: int | None = Field(
            None, description="Label value counted as background when filtering."
        )
        seed: int = Field(47, description="Seed of the slack-acceptance draws (reference: 47).")

    def __init__(
        self,
        raw: Any,
        label: Any = None,
        weight: Any = None,
        *,
        threshold: float = 0.6,
        slack_acceptance: float = 0.01,
        ignore_index: int | None = None,
        seed: int = 47,
        **grid: Any,
    ) -> None:
        super().__init__(raw, label, weight, **grid)
        self.threshold = threshold
        self.slack_acceptance = slack_acceptance
        #: labelled fraction of each grid patch (None without a label)
        self.fractions: list[float] | None = None
        if label is None or self.label_slices is None:
            return
        rand = np.random.RandomState(seed)
        fractions: list[float] = []
        keep: list[int] = []
        for i, idx in enumerate(self.label_slices):
            patch = np.asarray(label[idx])
            labelled = patch != 0
            if ignore_index is not None:
                labelled &= patch != ignore_index
            fraction = np.count_nonzero(labelled) / patch.size
            fractions.append(fraction)
            # same short-circuit as the reference: a draw only for patches below threshold
            if fraction > threshold or rand.rand() < slack_acceptance:
                keep.append(i)
        self.fractions = fractions
        if not keep:
            best = max(fractions)
            raise DataError(
                f"FilterSliceBuilder kept none of the {len(fractions)} patches: the largest "
                f"labelled fraction of a patch is {best:.3f}, not above threshold "
                f"{threshold}. Lower slice_builder.threshold (e.g. to {best / 2:.3g}), raise "
                f"slack_acceptance, or check that label_internal_path names the labels."
            )
        log.info(
            "FilterSliceBuilder: keeping %d of %d patches (%.0f%%)",
            len(keep),
            len(fractions),
            100 * len(keep) / len(fractions),
        )
        raw_slices, label_slices = self.raw_slices, self.label_slices
        self.raw_slices = [raw_slices[i] for i in keep]
        self.label_slices = (
            self.raw_slices if label_slices is raw_slices else [label_slices[i] for i in keep]
        )
        if self.weight_slices is not None:
            ws = self.weight_slices
            self.weight_slices = self.raw_slices if ws is raw_slices else [ws[i] for i in keep]
