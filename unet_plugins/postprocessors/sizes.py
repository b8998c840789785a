"""The instance postprocessors' size filter, and its thresholds learned from training labels.

A hand-set ``min_size`` is a guess that depends on voxel size and magnification. With
``min_size: auto`` the thresholds come from the ground truth the model was trained on, in two
groups, because an object cut by the volume's edge looks smaller than it is: for the objects
inside the volume, ``size_factor`` x the ``size_percentile``-th percentile of the training
objects that do not touch the edge; for the objects touching the edge, the same of the training
objects that do. With the defaults (5th percentile, factor 0.5) an object is removed (or merged
into a neighbour) when it is smaller than half of nearly every real object of its group: debris
and the slivers a watershed cuts off a nucleus are, real small objects are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig


class SizeFilterConfig(ComponentConfig):
    """The size-filter keys shared by ConnectedComponents and SeededWatershed."""

    min_size: int | Literal["auto"] = Field(
        0,
        description="Objects with fewer voxels are removed (0: keep all). 'auto': "
        "size_factor x the size_percentile-th percentile of the object sizes in size_labels, "
        "learnt apart for objects inside the volume and objects cut by its edge.",
    )
    size_labels: list[str] = Field(
        default_factory=list,
        description="Ground-truth files (e.g. the training files) whose object sizes set "
        "min_size: auto.",
    )
    size_labels_dataset: str = Field(
        "label", description="Dataset of the instance labels in size_labels (HDF5)."
    )
    size_percentile: float = Field(
        5.0, ge=0, le=100, description="Percentile of the training object sizes (auto)."
    )
    size_factor: float = Field(
        0.5, gt=0, description="min_size = size_factor x that percentile (auto)."
    )

    @model_validator(mode="after")
    def _labels_for_auto(self) -> SizeFilterConfig:
        if self.min_size == "auto" and not self.size_labels:
            raise ValueError(
                "min_size: auto learns the size from ground truth: list the training label "
                "files in size_labels (or set min_size to a number of voxels)"
            )
        if isinstance(self.min_size, int) and self.min_size < 0:
            raise ValueError("min_size must be >= 0 or 'auto'")
        return self


@dataclass(frozen=True)
class SizeLimits:
    """The smallest object kept inside the volume and at its edge (voxels)."""

    inner: int
    edge: int

    @property
    def active(self) -> bool:
        return max(self.inner, self.edge) > 1

    @property
    def lowest(self) -> int:
        """What the out-of-core paths apply to every object: they cannot tell which objects
        touch the edge before the blocks are merged."""
        return min(self.inner, self.edge)

    def small(self, labels: np.ndarray) -> np.ndarray:
        """Per label id 0..max: whether that object is below its limit (bool array)."""
        sizes = np.bincount(labels.ravel())
        limit = np.full(sizes.size, self.inner, dtype=np.int64)
        limit[edge_ids(labels)] = self.edge
        return sizes < np.maximum(limit, 1)


def edge_ids(labels: np.ndarray) -> np.ndarray:
    """The label values found on the volume's faces."""
    faces = [np.take(labels, i, axis=a).ravel() for a in range(labels.ndim) for i in (0, -1)]
    return np.unique(np.concatenate(faces))


def object_sizes(labels: np.ndarray, *, edge: bool | None = False) -> np.ndarray:
    """Voxel counts of the objects (label > 0): those inside the volume (``edge=False``),
    those touching its faces (``True``) or all (``None``)."""
    values, counts = np.unique(labels, return_counts=True)
    keep = values > 0
    if edge is not None:
        touching = np.isin(values, edge_ids(labels))
        keep &= touching if edge else ~touching
    return np.asarray(counts[keep], dtype=np.int64)


def learned_min_size(sizes: np.ndarray, percentile: float, factor: float) -> int:
    """``factor`` x the ``percentile``-th percentile of ``sizes`` (at least 1)."""
    return max(1, int(round(factor * float(np.percentile(sizes, percentile)))))


def training_sizes(paths: list[str], dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """The sizes of the objects inside and of those at the edge of every listed volume."""
    from unet_core.io import Source

    inner, edge = [], []
    for path in paths:
        with Source(path, key="postprocessor.size_labels") as source:
            volume = source.volume(dataset, key="postprocessor.size_labels_dataset")
            labels = np.asarray(volume.read())
        if labels.ndim == 4 and labels.shape[0] == 1:
            labels = labels[0]
        inner.append(object_sizes(labels, edge=False))
        edge.append(object_sizes(labels, edge=True))
    both = np.concatenate(inner + edge) if paths else np.zeros(0, dtype=np.int64)
    if both.size == 0:
        raise DataError(
            f"postprocessor.min_size: auto found no objects (label > 0) in dataset {dataset!r} "
            f"of {', '.join(paths)}; expected instance labels. Point size_labels at the "
            "training ground truth (size_labels_dataset names its dataset) or set min_size to "
            "a number of voxels."
        )
    return np.concatenate(inner), np.concatenate(edge)


def resolve_min_size(config: SizeFilterConfig) -> SizeLimits:
    """The limits a postprocessor applies: the configured number for every object, or the
    learned ones (a group without training objects takes the other group's limit)."""
    if config.min_size != "auto":
        return SizeLimits(int(config.min_size), int(config.min_size))
    inner, edge = training_sizes(config.size_labels, config.size_labels_dataset)
    p, f = config.size_percentile, config.size_factor
    limits = [learned_min_size(s, p, f) if s.size else None for s in (inner, edge)]
    inner_limit = limits[0] if limits[0] is not None else limits[1]
    edge_limit = limits[1] if limits[1] is not None else limits[0]
    assert inner_limit is not None and edge_limit is not None
    return SizeLimits(inner_limit, edge_limit)
