"""``StandardHDF5Dataset`` and ``LazyHDF5Dataset``: patches of HDF5, TIFF or any format's volumes.

One dataset per input file; ``file_paths`` entries may be files or folders (see
:func:`unet_core.io.expand_file_paths`). TIFF inputs use the same keys, with the internal
paths naming sibling files (:func:`unet_core.io.tiff_sibling`): for ``nuclei2d_raw.tif`` with
``label_internal_path: labels`` the labels are read from ``nuclei2d_labels.tif``.

* Standard: each process loads the whole volume(s) on first access and slices in memory.
* Lazy: each process keeps the file open read-only and reads one patch per item; memory does
  not grow with the volume. Unlike the reference it never writes into the input file: the
  test-time halo is mirrored from the window that is read.
"""

from __future__ import annotations

import logging
from typing import Any

from unet_core.config import LoadersConfig, PhaseConfig
from unet_core.errors import ConfigError
from unet_core.io import (
    FiniteView,
    NonFinitePolicy,
    Source,
    apply_policy,
)
from unet_plugins.datasets.configs import HDF5DatasetConfig
from unet_plugins.datasets.inputs import phase_section, volume_files
from unet_plugins.datasets.patches import PatchDataset
from unet_plugins.datasets.scaling import RandomScale

log = logging.getLogger(__name__)


class _HDF5Dataset(PatchDataset):
    Config = HDF5DatasetConfig

    @classmethod
    def input_files(
        cls, config: HDF5DatasetConfig, loaders: LoadersConfig, phase: str
    ) -> list[str]:
        """The files a phase reads (folders expanded, TIFF label/weight siblings removed)."""
        return volume_files(config, loaders, phase)

    @classmethod
    def create_datasets(
        cls,
        config: HDF5DatasetConfig,
        loaders: LoadersConfig,
        phase: str,
        needs_weight: bool = False,
    ) -> list[PatchDataset]:
        section = phase_section(loaders, phase)
        if section.slice_builder is None:
            raise ConfigError(
                f"loaders.{phase}.slice_builder is missing: {cls.__name__} cuts volumes into "
                f"patches and needs e.g. {{name: SliceBuilder, patch_shape: [64, 128, 128], "
                f"stride_shape: [32, 64, 64]}}."
            )
        if needs_weight and phase != "test" and config.weight_internal_path is None:
            raise ConfigError(
                "The loss needs a per-voxel weight map but loaders.weight_internal_path is not "
                "set; name the weight dataset of the input files (e.g. weight_internal_path: "
                "weight)."
            )
        if config.mirror_padding is not None:
            log.warning(
                "loaders.mirror_padding has no effect; the test-time context is "
                "slice_builder.halo_shape."
            )
        scale = _random_scale(loaders, section, phase)
        names = {
            "raw": config.raw_internal_path,
            "label": config.label_internal_path,
            "weight": config.weight_internal_path if needs_weight else None,
        }
        return [
            cls(
                path,
                phase,
                slice_builder=section.slice_builder,
                transformer=section.transformer,
                names=names,
                global_normalization=config.global_normalization,
                random_scale=scale,
                nonfinite=NonFinitePolicy.of(loaders),
            )
            for path in cls.input_files(config, loaders, phase)
        ]


def _random_scale(loaders: LoadersConfig, section: PhaseConfig, phase: str) -> RandomScale | None:
    scale = loaders.random_scale
    if scale is None or phase != "train":
        return None
    stride = section.stride_shape or ()
    patch = section.patch_shape or ()
    # axes with a 1-voxel patch (2D z) are never scaled, so their stride does not limit it
    if any(scale >= s for s, p in zip(stride, patch) if p > 1):
        raise ConfigError(
            f"loaders.random_scale ({scale}) must be smaller than every entry of "
            f"loaders.train.slice_builder.stride_shape {list(stride)} (axes with a patch "
            f"size of 1 excepted)."
        )
    return RandomScale(scale, loaders.random_scale_probability, patch)


class StandardHDF5Dataset(_HDF5Dataset):
    """Whole volumes in memory (loaded once per process, on first access); fastest."""

    lazy = False

    def _open(self, role: str) -> Any:
        name = self.names[role]
        raw_name = self.names["raw"]
        assert name is not None and raw_name is not None
        raw_word = raw_name if isinstance(raw_name, str) else raw_name[0]
        with Source(self.file_path, raw_name=raw_word) as src:
            volume = src.volume(name, key=f"{role}_internal_path", in_memory=True)
            array = apply_policy(volume.read(), self.nonfinite, volume.what)  # once per volume
        array.setflags(write=False)  # patches are copied before the transforms see them
        return array


class LazyHDF5Dataset(_HDF5Dataset):
    """Reads each patch from the file (opened read-only once per process); low memory."""

    lazy = True

    def _open(self, role: str) -> Any:
        name = self.names[role]
        assert name is not None
        volume = self._source().volume(name, key=f"{role}_internal_path", in_memory=False)
        return FiniteView(volume, self.nonfinite)  # every patch checked as it is read


__all__ = ["HDF5DatasetConfig", "LazyHDF5Dataset", "StandardHDF5Dataset"]
