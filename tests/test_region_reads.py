"""A Dask block task reads its block and halo in one piece: RegionCache, halo_box and the
datasets' ``window`` give the same patches as reading each patch from the file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_data_datasets import experiment, phase

from unet_core.engine.data import build_test_datasets
from unet_core.io import read_padded
from unet_core.io.region import RegionCache, halo_box
from unet_core.prediction.dask_blocks import PatchSubset, patches_per_block


class CountingArray:
    """An array whose reads are counted (what a lazily read volume costs per access)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, 0

    def __getitem__(self, index: object) -> np.ndarray:
        self.reads += 1
        return self.data[index]


def test_halo_box_is_the_union_of_the_grown_patches_inside_the_volume() -> None:
    indices = [
        (slice(0, 8), slice(10, 20), slice(5, 9)),
        (slice(4, 12), slice(18, 30), slice(0, 4)),
    ]
    assert halo_box(indices, (2, 3, 1), (12, 40, 10)) == (
        slice(0, 12),  # 0-2 clipped at 0, 12+2 clipped at the volume's 12
        slice(7, 33),
        slice(0, 10),
    )
    with pytest.raises(ValueError):
        halo_box([], (1, 1, 1), (4, 4, 4))


@pytest.mark.parametrize("channels", [None, 2])
def test_region_cache_reads_once_and_equals_the_volume(channels: int | None) -> None:
    rng = np.random.default_rng(0)
    shape = (10, 12, 14) if channels is None else (channels, 10, 12, 14)
    data = rng.random(shape).astype(np.float32)
    patches = [(slice(0, 5), slice(0, 6), slice(0, 7)), (slice(5, 10), slice(6, 12), slice(7, 14))]
    halo = (2, 3, 1)
    backing = CountingArray(data)
    cache = RegionCache(backing, halo_box(patches, halo, shape[-3:]))
    for index in patches:  # borders included: mirrored reads stay inside the box
        want = read_padded(data, index, halo)
        np.testing.assert_array_equal(read_padded(cache, index, halo), want)
    assert backing.reads == 1 and cache.reads == 1
    lead = (slice(None),) * (len(shape) - 3)
    window = cache[(*lead, slice(2, 4), slice(1, 3), slice(0, 2))]
    assert not window.flags.writeable  # callers copy before transforms modify a patch
    small = RegionCache(backing, (slice(0, 4), slice(0, 4), slice(0, 4)))
    outside = (*lead, slice(3, 6), slice(0, 2), slice(0, 2))  # reaches past the box
    np.testing.assert_array_equal(small[outside], data[outside])
    assert small.reads == 1 and small._data is None


@pytest.mark.parametrize("dataset", ["LazyHDF5Dataset", "StandardHDF5Dataset"])
def test_a_block_task_reads_its_input_once(sample_data: Path, tmp_path: Path, dataset: str) -> None:
    path = sample_data / "ovule_boundary.h5"  # (32, 128, 128)
    test = phase(
        [path],
        patch=(16, 48, 48),
        stride=(12, 40, 40),  # patches overlap and do not align with the blocks
        halo_shape=[2, 4, 4],
        skip_shape_check=True,
        raw=[{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
    )
    del test["transformer"]["label"]
    (ds,) = build_test_datasets(experiment({"dataset": dataset, "test": test}))
    block = (16, 64, 64)
    touching = patches_per_block([tuple(s)[-3:] for s in ds.raw_slices], block)
    assert len(touching) == 8
    for numbers in touching.values():
        subset = PatchSubset(ds, numbers)
        items = [subset[i] for i in range(len(subset))]
        for item, n in zip(items, numbers):  # the same tensors and indices as patch by patch
            x, index = ds[n]
            assert item[1] == index
            np.testing.assert_array_equal(item[0].numpy(), x.numpy())
        if dataset == "LazyHDF5Dataset":
            region = subset.dataset._store("raw")
            assert isinstance(region, RegionCache) and region.reads == 1
        else:  # already in memory: nothing to narrow
            assert subset.dataset is ds
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["label", "raw"]
