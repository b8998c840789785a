"""The datasets' loader keys, importable without torch or h5py.

``unet config validate`` reads these through the Deferred entries of
:mod:`unet_plugins.datasets.specs`; the dataset classes use the same models as their ``Config``.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from unet_plugins.datasets.legacy import LegacyLoaderKeys

Names = str | list[str]


class HDF5DatasetConfig(LegacyLoaderKeys):
    """The dataset keys of the ``loaders`` section for HDF5/TIFF patch datasets."""

    raw_internal_path: Names = Field(
        "raw",
        description="Dataset of the input (HDF5), or for TIFF the word in the raw file's name. "
        "A list stacks several datasets as channels.",
    )
    label_internal_path: Names = Field(
        "label",
        description="Dataset of the target (not read in the test phase). For TIFF: a word "
        "replacing the raw word in the file name, or a template like '{stem}_labels.tif'.",
    )
    weight_internal_path: Names | None = Field(
        None,
        description="Per-voxel loss weights; read only when the loss needs them "
        "(PixelWiseCrossEntropyLoss), otherwise accepted with no effect.",
    )
    global_normalization: bool = Field(
        False,
        description="Compute mean/std/1st/99.6th percentile over each file's whole raw volume "
        "and hand them to the transforms (Standardize, PercentileNormalizer, ...).",
    )

    @field_validator("raw_internal_path", "label_internal_path", "weight_internal_path")
    @classmethod
    def _non_empty(cls, v: Names | None) -> Names | None:
        if isinstance(v, list) and not v:
            raise ValueError("give a dataset name or a non-empty list of names")
        return v


class DSB2018DatasetConfig(LegacyLoaderKeys):
    expand_dims: bool = Field(
        True, description="(Y,X) -> (1,Y,X) and (Y,X,C) -> (C,1,Y,X), the 2D layouts."
    )
