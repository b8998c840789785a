"""The instance postprocessors' size filter, and its threshold learned from training labels.

A hand-set ``min_size`` is a guess that depends on voxel size and magnification. With
``min_size: auto`` the threshold comes from the ground truth the model was trained on: the
sizes (voxel counts) of its objects that do not touch the volume's edge (an object cut by the
edge looks smaller than it is), their ``size_percentile``-th percentile, times ``size_factor``.
With the defaults (5th percentile, factor 0.5) an object is dropped (or merged into a neighbour)
when it is smaller than half of nearly every real object; debris and the slivers a watershed
cuts off a nucleus are, real small objects are not.
"""

from __future__ import annotations

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
        "size_factor x the size_percentile-th percentile of the object sizes in size_labels.",
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


def object_sizes(labels: np.ndarray, *, inner_only: bool = True) -> np.ndarray:
    """Voxel counts of the objects (label > 0); with ``inner_only`` those touching the
    volume's edge are left out."""
    values, counts = np.unique(labels, return_counts=True)
    keep = values > 0
    if inner_only:
        edge = np.unique(np.concatenate([_faces(labels, axis) for axis in range(labels.ndim)]))
        keep &= ~np.isin(values, edge)
    return np.asarray(counts[keep], dtype=np.int64)


def _faces(labels: np.ndarray, axis: int) -> np.ndarray:
    first = np.take(labels, 0, axis=axis).ravel()
    last = np.take(labels, labels.shape[axis] - 1, axis=axis).ravel()
    return np.concatenate([first, last])


def learned_min_size(sizes: np.ndarray, percentile: float, factor: float) -> int:
    """``factor`` x the ``percentile``-th percentile of ``sizes`` (at least 1)."""
    return max(1, int(round(factor * float(np.percentile(sizes, percentile)))))


def training_sizes(paths: list[str], dataset: str) -> np.ndarray:
    """The inner object sizes of every listed ground-truth volume together."""
    from unet_core.io import Source

    found = []
    for path in paths:
        with Source(path, key="postprocessor.size_labels") as source:
            labels = np.asarray(
                source.volume(dataset, key="postprocessor.size_labels_dataset").read()
            )
        if labels.ndim == 4 and labels.shape[0] == 1:
            labels = labels[0]
        sizes = object_sizes(labels)
        if sizes.size == 0:  # every object touches the edge: use them all rather than none
            sizes = object_sizes(labels, inner_only=False)
        found.append(sizes)
    sizes = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    if sizes.size == 0:
        raise DataError(
            f"postprocessor.min_size: auto found no objects (label > 0) in dataset {dataset!r} "
            f"of {', '.join(paths)}; expected instance labels. Point size_labels at the "
            "training ground truth (size_labels_dataset names its dataset) or set min_size to "
            "a number of voxels."
        )
    return sizes


def resolve_min_size(config: SizeFilterConfig) -> int:
    """The min_size a postprocessor applies: the configured number, or the learned one."""
    if config.min_size == "auto":
        sizes = training_sizes(config.size_labels, config.size_labels_dataset)
        return learned_min_size(sizes, config.size_percentile, config.size_factor)
    return int(config.min_size)
