"""Reading input volumes (HDF5, TIFF) and writing outputs, shared by datasets and predictors."""

from unet_core.io.atomic import atomic_output
from unet_core.io.paths import (
    HDF5_EXTENSIONS,
    TIFF_EXTENSIONS,
    VOLUME_EXTENSIONS,
    expand_file_paths,
    is_hdf5,
    is_tiff,
    tiff_sibling,
)
from unet_core.io.stats import compute_stats
from unet_core.io.volume import Source, Volume, open_dataset, open_hdf5, read_padded, read_tiff

__all__ = [
    "HDF5_EXTENSIONS",
    "TIFF_EXTENSIONS",
    "VOLUME_EXTENSIONS",
    "Source",
    "Volume",
    "atomic_output",
    "compute_stats",
    "expand_file_paths",
    "is_hdf5",
    "is_tiff",
    "open_dataset",
    "open_hdf5",
    "read_padded",
    "read_tiff",
    "tiff_sibling",
]
