"""Instance segmentation from predictions: connected components and seeded watershed.

Each postprocessor maps probabilities (C,Z,Y,X) to labels (Z,Y,X) (0 = background, objects
numbered 1..n consecutively), which the predictors write as the ``segmentation`` dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from unet_core.config import VoxelSizeZYX
from unet_core.errors import DataError
from unet_plugins.postprocessors.agglomeration import (
    Contacts,
    average_agglomeration,
    contact_statistics,
)
from unet_plugins.postprocessors.sizes import SizeFilterConfig, SizeLimits, resolve_min_size

Index = tuple[slice, ...]


def _channel(prediction: np.ndarray, channel: int, key: str, who: str) -> np.ndarray:
    if prediction.ndim == 3:
        prediction = prediction[None]
    if prediction.ndim != 4:
        raise DataError(f"{who} expects a prediction of shape (C,Z,Y,X), got {prediction.shape}.")
    if not 0 <= channel < prediction.shape[0]:
        raise DataError(
            f"{who}: {key} {channel} does not exist; the prediction has "
            f"{prediction.shape[0]} channel(s) (0..{prediction.shape[0] - 1}). Fix "
            f"postprocessor.{key}."
        )
    return np.asarray(prediction[channel], dtype=np.float32)


def remove_small(labels: np.ndarray, min_size: int | SizeLimits) -> np.ndarray:
    """Drop objects with fewer than ``min_size`` voxels (limits: one inside the volume, one
    for objects touching its faces) and renumber the rest 1..n."""
    if labels.max(initial=0) == 0:
        return labels.astype(np.uint32)
    if isinstance(min_size, int):
        min_size = SizeLimits(min_size, min_size)
    keep = ~min_size.small(labels)
    keep[0] = False
    lut = np.zeros(keep.size, dtype=np.uint32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lut[labels]


class ConnectedComponents:
    """Objects = connected components of ``p[foreground_channel] (- p[boundary_channel]) >
    threshold``; for blob-like objects (nuclei) whose predictions separate them."""

    class Config(SizeFilterConfig):
        foreground_channel: int = Field(0, ge=0, description="Channel of the foreground.")
        threshold: float = Field(0.5, description="Foreground if probability > threshold.")
        boundary_channel: int | None = Field(
            None,
            ge=0,
            description="Optional boundary channel subtracted from the foreground first "
            "(splits touching objects).",
        )
        connectivity: int = Field(
            1, ge=1, le=3, description="Neighbours: 1 faces, 2 +edges, 3 +corners."
        )

    def __init__(self, config: Config) -> None:
        self.config = config
        self.min_size = resolve_min_size(config)

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> ConnectedComponents:
        return cls(config)

    def foreground(self, prediction: np.ndarray) -> np.ndarray:
        """The voxels that belong to some object (bool, Z,Y,X)."""
        c = self.config
        who = "ConnectedComponents"
        fg = _channel(prediction, c.foreground_channel, "foreground_channel", who)
        if c.boundary_channel is not None:
            fg = fg - _channel(prediction, c.boundary_channel, "boundary_channel", who)
        return np.asarray(fg > c.threshold)

    def __call__(self, prediction: np.ndarray) -> np.ndarray:
        from skimage.measure import label

        labels = label(self.foreground(prediction), connectivity=self.config.connectivity)
        return remove_small(labels, self.min_size)

    def segment_blocks(
        self,
        read: Callable[[Index], np.ndarray],
        shape: tuple[int, ...],
        block: tuple[int, ...],
        open_output: Callable[[int], Callable[[Index, np.ndarray], None]],
        scratch_dir: str | None = None,
    ) -> int:
        """The same labels as ``__call__`` for a volume that does not fit in memory.

        ``read(index)`` gives the probabilities (C, *block) of one block; see
        :func:`unet_plugins.postprocessors.blockwise.connected_components_blockwise`.
        """
        from unet_plugins.postprocessors.blockwise import connected_components_blockwise

        return connected_components_blockwise(
            lambda index: self.foreground(read(index)),
            shape,
            block,
            open_output,
            connectivity=self.config.connectivity,
            min_size=self.min_size.lowest,
            scratch_dir=scratch_dir,
        )

    def segment_dask(
        self,
        client: Any,
        read: Callable[[Index], np.ndarray],
        shape: tuple[int, ...],
        block: tuple[int, ...],
        open_output: Callable[[int], Callable[[Index, np.ndarray], None]],
        scratch_dir: str | None = None,
    ) -> int:
        """``segment_blocks`` with the blocks as tasks on a Dask cluster (same labels)."""
        from unet_plugins.postprocessors.dask_components import connected_components_dask

        return connected_components_dask(
            client,
            self.foreground,
            read,
            shape,
            block,
            open_output,
            connectivity=self.config.connectivity,
            min_size=self.min_size.lowest,
            scratch_dir=scratch_dir,
        )


class SeededWatershed:
    """Watershed from seeds: for cells separated by predicted boundaries, for touching blobs
    split along the distance transform of the foreground, or along a predicted distance map
    (a model trained on :class:`~unet_plugins.transforms.distance.LabelToDistance` targets).

    Seeds are maxima (at least ``min_distance`` apart) of a height map inside a seed region:
    the predicted distance above ``distance_threshold`` (distance_channel), else the
    (smoothed) distance transform of the interior (boundary p < seed_threshold), else of the
    foreground. ``seed_method: components`` makes each connected seed region one seed instead.
    ``merge_threshold`` then merges neighbours that no predicted boundary separates.
    """

    class Config(SizeFilterConfig):
        boundary_channel: int | None = Field(
            0,
            ge=0,
            description="Channel of the boundary probability (None: use the "
            "foreground's distance transform as the relief).",
        )
        foreground_channel: int | None = Field(
            None,
            ge=0,
            description="Optional foreground channel; voxels below mask_threshold stay background.",
        )
        distance_channel: int | None = Field(
            None,
            ge=0,
            description="Channel of a predicted normalised distance (1 at object centres; "
            "LabelToDistance targets): seeds and relief come from it. Needs "
            "foreground_channel.",
        )
        mask_threshold: float = Field(0.5, description="Foreground if p > mask_threshold.")
        seed_threshold: float = Field(
            0.5, description="Interior (seed region) where boundary p < seed_threshold."
        )
        distance_threshold: float = Field(
            0.5, description="Seed region where the predicted distance > distance_threshold."
        )
        seed_method: str = Field(
            "distance",
            description="distance: maxima of the distance (predicted, or the transform of the "
            "interior); components: each connected seed region is one seed.",
        )
        min_distance: int = Field(
            3, ge=1, description="Minimum distance between distance-transform seeds (voxels)."
        )
        sigma: float = Field(1.0, ge=0, description="Gaussian smoothing of the distance map.")
        sampling: VoxelSizeZYX = Field(
            default_factory=lambda: [1.0, 1.0, 1.0],
            description="Voxel size (Z,Y,X) for the distance transform (anisotropic data).",
        )
        compactness: float = Field(0.0, ge=0, description="Compact watershed parameter.")
        merge_threshold: float | None = Field(
            None,
            gt=0,
            le=1,
            description="Merge neighbouring segments whose contact has a mean boundary "
            "probability below this (average agglomeration, lowest first): joins the pieces "
            "of a large or lobed cell that got several seeds. Needs boundary_channel; None: "
            "no merging.",
        )
        small_objects: Literal["merge", "drop"] = Field(
            "merge",
            description="Objects below min_size: merge = flooded by their neighbours (an "
            "isolated one becomes background), drop = all become background.",
        )
        block_halo: int = Field(
            16,
            ge=0,
            description="On Dask: voxels of context read around each block. The result equals "
            "the whole-volume watershed when it exceeds the largest object's diameter plus "
            "min_distance and 4 sigma (docs/large-volumes.md).",
        )

        @field_validator("seed_method")
        @classmethod
        def _method(cls, v: str) -> str:
            if v not in ("distance", "components"):
                raise ValueError("seed_method must be 'distance' or 'components'")
            return v

        @model_validator(mode="after")
        def _channels(self) -> SeededWatershed.Config:
            if self.boundary_channel is None and self.foreground_channel is None:
                raise ValueError(
                    "set boundary_channel (cells) or foreground_channel (blobs), or both"
                )
            if self.merge_threshold is not None and self.boundary_channel is None:
                raise ValueError(
                    "merge_threshold needs boundary_channel: segments are merged where the "
                    "predicted boundary between them is weak"
                )
            if self.distance_channel is not None and self.foreground_channel is None:
                raise ValueError(
                    "distance_channel needs foreground_channel: the foreground decides which "
                    "voxels belong to an object"
                )
            return self

    def __init__(self, config: Config) -> None:
        self.config = config
        self.min_size = resolve_min_size(config)

    @classmethod
    def from_config(cls, config: Config, **_: Any) -> SeededWatershed:
        return cls(config)

    def relief(self, prediction: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
        """(mask or None, seed region, relief flooded by the watershed, height whose maxima
        are the seeds): one definition for the whole-volume and the Dask watershed."""
        c = self.config
        mask = None
        if c.foreground_channel is not None:
            fg = _channel(prediction, c.foreground_channel, "foreground_channel", self._who)
            mask = fg > c.mask_threshold
        relief, interior, height = self._landscape(prediction, mask)
        return mask, interior, relief, height

    _who = "SeededWatershed"

    def _landscape(
        self, prediction: np.ndarray, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(relief flooded by the watershed, seed region, height whose maxima are seeds)."""
        from scipy import ndimage as ndi

        c = self.config
        if c.distance_channel is not None:
            height = _channel(prediction, c.distance_channel, "distance_channel", self._who)
            if c.sigma > 0:
                height = ndi.gaussian_filter(height, c.sigma)
            interior = (height > c.distance_threshold) & mask
            return -height, interior, height
        if c.boundary_channel is not None:
            relief = _channel(prediction, c.boundary_channel, "boundary_channel", self._who)
            interior = relief < c.seed_threshold
            if mask is not None:
                interior &= mask
        else:
            assert mask is not None
            interior, relief = mask, None
        height = ndi.distance_transform_edt(interior, sampling=c.sampling).astype(np.float32)
        if c.sigma > 0:
            height = ndi.gaussian_filter(height, c.sigma)
        return (-height if relief is None else relief), interior, height

    def flood(self, relief: np.ndarray, markers: np.ndarray, mask: Any) -> np.ndarray:
        from skimage.segmentation import watershed

        return np.asarray(
            watershed(relief, markers, mask=mask, compactness=self.config.compactness)
        )

    def __call__(self, prediction: np.ndarray) -> np.ndarray:
        mask, interior, relief, height = self.relief(prediction)
        labels = self.flood(relief, self.seed_labels(interior, height), mask)
        if self.config.merge_threshold is not None:
            labels = self.merged(int(labels.max()), self.contacts(prediction, labels))[labels]
        if self.min_size.active:
            labels = remove_small(labels, self.min_size)
            if self.config.small_objects == "merge":
                labels = self.flood(relief, labels, mask)
        return remove_small(labels, 1)

    def contacts(
        self, prediction: np.ndarray, labels: np.ndarray, own: tuple[int, ...] | None = None
    ) -> Contacts:
        """Boundary statistics of the contacts between ``labels`` (see
        :func:`~unet_plugins.postprocessors.agglomeration.contact_statistics`)."""
        assert self.config.boundary_channel is not None
        boundary = _channel(prediction, self.config.boundary_channel, "boundary_channel", self._who)
        return contact_statistics(labels, boundary, own)

    def merged(self, n: int, contacts: Contacts) -> np.ndarray:
        """Lookup table label (0..n) -> merged label, for ``merge_threshold``."""
        assert self.config.merge_threshold is not None
        return average_agglomeration(contacts, n, self.config.merge_threshold)

    def segment_dask(
        self,
        client: Any,
        read: Callable[[Index], np.ndarray],
        shape: tuple[int, ...],
        block: tuple[int, ...],
        open_output: Callable[[int], Callable[[Index, np.ndarray], None]],
        scratch_dir: str | None = None,
    ) -> int:
        """The watershed as tasks on a Dask cluster, each block with ``block_halo`` voxels of
        context, seeds numbered over the whole volume (see
        :mod:`unet_plugins.postprocessors.dask_watershed` for when it equals ``__call__``)."""
        from unet_plugins.postprocessors.dask_watershed import seeded_watershed_dask

        return seeded_watershed_dask(
            client, self, read, shape, block, open_output, scratch_dir=scratch_dir
        )

    def seed_labels(self, interior: np.ndarray, distance: np.ndarray) -> np.ndarray:
        from scipy import ndimage as ndi
        from skimage.measure import label

        regions = label(interior, connectivity=1)
        if self.config.seed_method == "components":
            return np.asarray(regions, dtype=np.int32)
        # maxima of the distance within min_distance; a plateau of equal maxima is one seed
        size = 2 * self.config.min_distance + 1
        peaks = (distance == ndi.maximum_filter(distance, size=size)) & interior
        # every interior region gets a seed (regions next to a deeper one may have none)
        missing = np.setdiff1d(np.unique(regions), np.append(np.unique(regions[peaks]), 0))
        for point in region_points(regions, missing):
            peaks[point] = True
        return np.asarray(label(peaks, connectivity=3), dtype=np.int32)


def region_points(regions: np.ndarray, ids: np.ndarray) -> list[tuple[int, ...]]:
    """One voxel inside each region (the first in raster order), for seeding."""
    from scipy import ndimage as ndi

    found = ndi.find_objects(regions)
    out = []
    for i in ids:
        box = found[int(i) - 1]
        if box is None:
            continue
        local = np.argwhere(regions[box] == i)[0]
        out.append(tuple(int(s.start + o) for s, o in zip(box, local)))
    return out
