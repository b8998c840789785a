"""Reading input volumes (through the volume formats) and writing outputs."""

from unet_core.io.atomic import atomic_output
from unet_core.io.finite import FiniteView, NonFinitePolicy, apply_policy
from unet_core.io.h5write import write_array
from unet_core.io.paths import (
    drop_companions,
    expand_file_paths,
    is_single_array,
    tiff_sibling,
    volume_suffixes,
)
from unet_core.io.region import RegionCache, halo_box
from unet_core.io.scratch import temp_file
from unet_core.io.stats import compute_stats
from unet_core.io.volume import Source, Volume, read_padded

__all__ = [
    "FiniteView",
    "NonFinitePolicy",
    "RegionCache",
    "apply_policy",
    "temp_file",
    "Source",
    "Volume",
    "atomic_output",
    "compute_stats",
    "drop_companions",
    "expand_file_paths",
    "halo_box",
    "is_single_array",
    "read_padded",
    "tiff_sibling",
    "volume_suffixes",
    "write_array",
]
