"""Which files (or folders) each built-in dataset reads: torch-free, so that ``unet config
validate`` can check them the way the datasets will read them without importing torch.

The dataset classes use these same functions as their ``input_files``; the specs declare them
as light attributes.
"""

from __future__ import annotations

import os
from typing import Any

from unet_core.errors import ConfigError, DataError
from unet_core.io import drop_companions, expand_file_paths, is_single_array


def phase_section(loaders: Any, phase: str) -> Any:
    section = getattr(loaders, phase, None)
    if section is None:
        raise ConfigError(
            f"loaders.{phase} is missing: the {phase} phase needs `file_paths` (and for HDF5/TIFF "
            f"datasets a `slice_builder`)."
        )
    return section


def volume_files(config: Any, loaders: Any, phase: str) -> list[str]:
    """HDF5/TIFF/Zarr datasets: the files a phase reads (folders expanded, TIFF label/weight
    siblings removed)."""
    section = phase_section(loaders, phase)
    files = expand_file_paths(section.file_paths, key=f"loaders.{phase}.file_paths")
    if any(is_single_array(f) for f in files):
        names = [n for n in (config.label_internal_path, config.weight_internal_path) if n]
        words = [n if isinstance(n, str) else n[0] for n in names]
        raw = config.raw_internal_path
        files = drop_companions(files, words, raw if isinstance(raw, str) else raw[0])
    return files


def image_folders(config: Any, loaders: Any, phase: str) -> list[str]:
    """DSB2018: the folders a phase reads, each holding images/ (and masks/)."""
    section = phase_section(loaders, phase)
    roots = []
    for entry in section.file_paths:
        if not os.path.isdir(entry):
            expand_file_paths([entry], key=f"loaders.{phase}.file_paths")  # missing -> error
            raise DataError(
                f"{entry} (loaders.{phase}.file_paths) is a file; DSB2018Dataset expects "
                f"folders that contain images/ (and masks/)."
            )
        roots.append(str(entry))
    return roots
