"""Entry points of the built-in datasets: loader-key schemas without torch or h5py.

Each name is a :class:`~unet_core.interfaces.Deferred` whose ``Config`` comes from
:mod:`unet_plugins.datasets.configs`; the dataset module is imported only when data is loaded.
"""

from __future__ import annotations

from unet_core.interfaces import Deferred
from unet_plugins.datasets import configs as c
from unet_plugins.datasets import inputs

StandardHDF5Dataset = Deferred(
    "unet_plugins.datasets.hdf5:StandardHDF5Dataset",
    c.HDF5DatasetConfig,
    input_files=inputs.volume_files,
)
LazyHDF5Dataset = Deferred(
    "unet_plugins.datasets.hdf5:LazyHDF5Dataset",
    c.HDF5DatasetConfig,
    input_files=inputs.volume_files,
)
DSB2018Dataset = Deferred(
    "unet_plugins.datasets.dsb:DSB2018Dataset",
    c.DSB2018DatasetConfig,
    input_files=inputs.image_folders,
)
