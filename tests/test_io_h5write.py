"""Parallel gzip writing: the same HDF5 deflate dataset (values, filter, level, chunks) that
h5py writes itself, for any shape, edge chunks included."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from unet_core.io import h5write
from unet_core.io.h5write import write_array
from unet_plugins.formats.hdf5 import compression_options as h5_compression


@pytest.mark.parametrize(
    ("shape", "dtype", "chunks", "compression"),
    [
        ((1, 37, 61, 83), np.float32, None, "gzip"),  # h5py's own chunk guess, ragged edges
        ((2, 40, 50, 60), np.float16, (1, 16, 32, 32), 6),
        ((33, 70, 90), np.uint16, (8, 32, 32), "gzip"),
        ((30, 40, 50), np.uint8, (30, 40, 50), 1),  # one chunk
    ],
)
def test_parallel_gzip_equals_h5py(tmp_path, monkeypatch, shape, dtype, chunks, compression):
    monkeypatch.setattr(h5write, "PARALLEL_MIN_BYTES", 0)  # small arrays take the pool too
    rng = np.random.default_rng(0)
    array = (rng.random(shape) * 200).astype(dtype)
    comp = h5_compression(compression)
    with h5py.File(tmp_path / "ours.h5", "w") as f:
        write_array(f, "x", array, chunks=chunks, compression=comp)
    with h5py.File(tmp_path / "h5py.h5", "w") as f:
        f.create_dataset("x", data=array, chunks=chunks if chunks else True, **comp)
    with h5py.File(tmp_path / "ours.h5") as ours, h5py.File(tmp_path / "h5py.h5") as ref:
        a, b = ours["x"], ref["x"]
        assert (a.shape, a.dtype, a.chunks) == (b.shape, b.dtype, b.chunks)
        assert (a.compression, a.compression_opts) == ("gzip", comp.get("compression_opts", 4))
        np.testing.assert_array_equal(a[...], array)
        # stored chunk for chunk as h5py stores them: same deflate stream, same size
        assert a.id.get_storage_size() == b.id.get_storage_size()


def test_other_filters_and_small_arrays_go_through_h5py(tmp_path):
    array = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        assert write_array(f, "lzf", array, compression={"compression": "lzf"}).compression == "lzf"
        assert write_array(f, "raw", array).compression is None
        assert write_array(f, "small", array, compression={"compression": "gzip"}).chunks
        np.testing.assert_array_equal(f["small"][...], array)
