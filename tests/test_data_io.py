"""unet_core.io: file lists, opening, layouts, TIFF, mirrored reads, stats, atomic writes."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile

from unet_core.errors import DataError
from unet_core.io import (
    Source,
    atomic_output,
    compute_stats,
    expand_file_paths,
    read_padded,
    tiff_sibling,
)
from unet_core.io import stats as stats_module
from unet_core.io.paths import drop_companions, overlapping
from unet_core.io.volume import Volume, reflect_indices
from unet_plugins.formats.tiff import read_tiff


def _h5(path: Path, **arrays: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for name, array in arrays.items():
            f.create_dataset(name, data=array)
    return path


# -- file lists --------------------------------------------------------------------------------
def test_folder_expands_grouped_by_extension_then_sorted(tmp_path: Path) -> None:
    for name in ["b.hdf5", "a.hd5", "z.h5", "c.hdf", "a.h5", "x.tif", "notes.txt", "y.tiff"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep.h5").write_bytes(b"")
    single = tmp_path / "sub" / "deep.h5"
    files = expand_file_paths([str(single), str(tmp_path)])
    names = [Path(f).name for f in files]
    # the file first, then the folder: .h5, .hdf, .hdf5, .hd5, .tif, .tiff; not recursive
    assert names == ["deep.h5", "a.h5", "z.h5", "c.hdf", "b.hdf5", "a.hd5", "x.tif", "y.tiff"]


def test_missing_path_names_it_and_the_key(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "vol.h5"
    with pytest.raises(DataError) as err:
        expand_file_paths([str(missing)], key="loaders.train.file_paths")
    msg = str(err.value)
    assert str(missing) in msg and "loaders.train.file_paths" in msg
    assert "does not exist either" in msg  # the folder is missing too


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("no volumes here")
    with pytest.raises(DataError) as err:
        expand_file_paths([str(tmp_path)], key="loaders.val.file_paths")
    assert str(tmp_path) in str(err.value) and "contains no input files" in str(err.value)
    assert ".h5" in str(err.value)


def test_overlap_compares_resolved_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _h5(tmp_path / "a.h5", raw=np.zeros((1, 2, 2)))
    monkeypatch.chdir(tmp_path)
    assert overlapping([str(tmp_path / "a.h5")], ["./a.h5", "b.h5"]) == ["./a.h5"]


# -- opening HDF5 ------------------------------------------------------------------------------
def test_missing_dataset_lists_what_the_file_has(sample_data: Path) -> None:
    path = sample_data / "nuclei3d_train_a.h5"
    with Source(str(path)) as src, pytest.raises(DataError) as err:
        src.volume("labels", key="label_internal_path")
    msg = str(err.value)
    assert "'labels'" in msg and str(path) in msg and "label_internal_path" in msg
    assert "'label' (100, 100, 100) uint8" in msg and "'raw' (100, 100, 100) uint8" in msg


def test_group_is_not_a_dataset(tmp_path: Path) -> None:
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_group("raw").create_dataset("data", data=np.zeros((2, 3, 4)))
    with Source(str(path)) as src:
        with pytest.raises(DataError, match="is a group, not a dataset.*'raw/data' \\(2, 3, 4\\)"):
            src.volume("raw", key="raw_internal_path")
        assert src.volume("/raw/data", key="raw_internal_path").shape == (2, 3, 4)


def test_not_an_hdf5_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.h5"
    path.write_bytes(b"this is not hdf5")
    with pytest.raises(DataError, match="Cannot open .*broken.h5.* as an HDF5 file"):
        Source(str(path))


def test_missing_input_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        Source(str(tmp_path / "gone.h5"))


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "vol.npy"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="no installed volume format claims it.*hdf5.*tiff"):
        Source(str(path))


# -- layouts -----------------------------------------------------------------------------------
def test_layouts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "yx": rng.random((5, 7)),
        "zyx": rng.random((3, 5, 7)),
        "czyx": rng.random((2, 3, 5, 7)),
        "bad": rng.random((1, 2, 3, 5, 7)),
    }
    path = _h5(tmp_path / "l.h5", **arrays)
    with Source(str(path)) as src, caplog.at_level(logging.INFO):
        yx = src.volume("yx", key="raw_internal_path")
        assert yx.shape == (1, 5, 7) and "plain 2D image" in caplog.text
        np.testing.assert_array_equal(yx.read(), arrays["yx"][None])
        np.testing.assert_array_equal(yx[0:1, 1:3, 2:5], arrays["yx"][None, 1:3, 2:5])
        assert src.volume("zyx", key="raw_internal_path").shape == (3, 5, 7)
        czyx = src.volume("czyx", key="raw_internal_path")
        assert czyx.spatial_shape == (3, 5, 7) and czyx.ndim == 4
        # a spatial-only index on a 4D volume reads every channel
        np.testing.assert_array_equal(czyx[1:2, :, 3:], arrays["czyx"][:, 1:2, :, 3:])
        with pytest.raises(DataError, match=r"shape \(1, 2, 3, 5, 7\) \(5 dimensions\)"):
            src.volume("bad", key="raw_internal_path")


def test_list_of_names_stacks_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random((3, 4, 5)), rng.random((2, 3, 4, 5))
    path = _h5(tmp_path / "s.h5", a=a, b=b, c=rng.random((3, 4, 6)))
    with Source(str(path)) as src:
        v = src.volume(["a", "b"], key="raw_internal_path")
        assert v.shape == (3, 3, 4, 5)
        np.testing.assert_array_equal(v[:, 1:3, :, 2:], np.concatenate([a[None], b])[:, 1:3, :, 2:])
        with pytest.raises(DataError, match="different spatial shapes"):
            src.volume(["a", "c"], key="raw_internal_path")


# -- TIFF --------------------------------------------------------------------------------------
def test_tiff_real_file_and_sibling_rules(sample_data: Path, tmp_path: Path) -> None:
    raw_path = str(sample_data / "nuclei2d_raw.tif")
    labels_path = str(sample_data / "nuclei2d_labels.tif")
    assert tiff_sibling(raw_path, "labels", "raw", key="label_internal_path") == labels_path
    assert tiff_sibling(raw_path, "{stem}", "raw", key="k") == raw_path
    with pytest.raises(DataError) as err:
        tiff_sibling(raw_path, "label", "raw", key="loaders.label_internal_path")
    msg = str(err.value)
    assert "nuclei2d_label.tif" in msg and "nuclei2d_labels.tif" in msg  # tried + available
    with Source(raw_path, raw_name="raw") as src:
        raw = src.volume("raw", key="raw_internal_path")
        label = src.volume("labels", key="label_internal_path")
        assert raw.shape == label.shape == (1, 512, 512)
        assert raw.dtype == label.dtype == np.uint16
        np.testing.assert_array_equal(label.read()[0], tifffile.imread(labels_path))
        assert len(np.unique(label.read())) == 126  # 125 nuclei + background
    # template rule with a folder: masks/<stem>.tif
    (tmp_path / "masks").mkdir()
    shutil.copy(labels_path, tmp_path / "masks" / "img.tif")
    shutil.copy(raw_path, tmp_path / "img.tif")
    found = tiff_sibling(str(tmp_path / "img.tif"), "masks/{stem}", "raw", key="k")
    assert found == str(tmp_path / "masks" / "img.tif")


def test_tiff_axes_and_memmap(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    zcyx = rng.integers(0, 1000, (4, 2, 8, 9), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "h.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    data = read_tiff(str(tmp_path / "h.tif"), memmap=True)
    assert data.shape == (2, 4, 8, 9)  # channels first
    np.testing.assert_array_equal(np.asarray(data), zcyx.transpose(1, 0, 2, 3))
    rgb = rng.integers(0, 255, (8, 9, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    assert read_tiff(str(tmp_path / "rgb.tif")).shape == (3, 1, 8, 9)
    plain = rng.integers(0, 255, (6, 8, 9), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "zyx.tif", plain)
    mm = read_tiff(str(tmp_path / "zyx.tif"), memmap=True)
    assert isinstance(mm, np.memmap) and not mm.flags.writeable
    np.testing.assert_array_equal(mm, plain)


def test_folder_of_tiffs_drops_label_companions(sample_data: Path, tmp_path: Path) -> None:
    for name in ("nuclei2d_raw.tif", "nuclei2d_labels.tif"):
        shutil.copy(sample_data / name, tmp_path / name)
    files = expand_file_paths([str(tmp_path)])
    assert [Path(f).name for f in files] == ["nuclei2d_labels.tif", "nuclei2d_raw.tif"]
    kept = drop_companions(files, ["labels"], "raw")
    assert [Path(f).name for f in kept] == ["nuclei2d_raw.tif"]


# -- mirrored reads ----------------------------------------------------------------------------
@pytest.mark.parametrize("size", [1, 2, 5, 9])
def test_reflect_indices_match_numpy_pad(size: int) -> None:
    a = np.arange(size)
    for pad in (0, 1, 3, 12):
        padded = np.pad(a, pad, mode="reflect")
        np.testing.assert_array_equal(a[reflect_indices(-pad, size + pad, size)], padded)


def test_read_padded_equals_pad_then_crop(sample_data: Path) -> None:
    halo = (3, 8, 5)
    with Source(str(sample_data / "ovule_boundary.h5")) as src:
        vol = src.volume("raw", key="raw_internal_path")
        whole = vol.read()
        padded = np.pad(whole, [(h, h) for h in halo], mode="reflect")
        for z0, y0, x0 in [(0, 0, 0), (16, 64, 64), (8, 30, 100), (24, 100, 0)]:
            index = (slice(z0, z0 + 8), slice(y0, y0 + 28), slice(x0, x0 + 28))
            got = read_padded(vol, index, halo)
            want = padded[z0 : z0 + 8 + 6, y0 : y0 + 28 + 16, x0 : x0 + 28 + 10]
            np.testing.assert_array_equal(got, want)
            # the centre is the unpadded patch
            np.testing.assert_array_equal(got[3:-3, 8:-8, 5:-5], whole[index])
    four = np.arange(2 * 4 * 5 * 6).reshape(2, 4, 5, 6)
    got = read_padded(four, (slice(0, 4), slice(1, 5), slice(2, 6)), (2, 2, 2))
    want = np.pad(four, [(0, 0), (2, 2), (2, 2), (2, 2)], mode="reflect")[:, 0:8, 1:9, 2:10]
    np.testing.assert_array_equal(got, want)


# -- statistics --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["nuclei3d_train_a.h5", "ovule_boundary.h5"])
def test_stats_on_real_volumes_equal_numpy(sample_data: Path, name: str) -> None:
    with Source(str(sample_data / name)) as src:
        vol = src.volume("raw", key="raw_internal_path")
        whole = vol.read()
        stats = compute_stats(vol)
    assert stats["pmin"] == np.percentile(whole, 1)
    assert stats["pmax"] == np.percentile(whole, 99.6)
    assert stats["mean"] == pytest.approx(np.mean(whole, dtype=np.float64), rel=1e-12)
    assert stats["std"] == pytest.approx(np.std(whole, dtype=np.float64), rel=1e-12)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "float64"])
def test_stats_of_each_dtype_equal_numpy(dtype: str) -> None:
    rng = np.random.default_rng(4)
    data = (rng.normal(size=(2, 9, 31, 40)) * 900 + 1500).clip(0, 4000).astype(dtype)
    stats = compute_stats(Volume([data], what="raw", path="-"))
    assert stats["pmin"] == pytest.approx(float(np.percentile(data, 1)), rel=1e-12)
    assert stats["pmax"] == pytest.approx(float(np.percentile(data, 99.6)), rel=1e-12)
    assert stats["mean"] == pytest.approx(float(np.mean(data, dtype=np.float64)), rel=1e-12)
    assert stats["std"] == pytest.approx(float(np.std(data, dtype=np.float64)), rel=1e-12)


def test_stats_float_refinement_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    # a tiny collect limit forces several histogram passes before the final partition
    monkeypatch.setattr(stats_module, "_COLLECT_LIMIT", 5)
    rng = np.random.default_rng(3)
    data = np.concatenate([rng.normal(size=20000), np.full(3000, 0.25)]).astype(np.float32)
    data = data.reshape(23, 10, 100)
    vol = Volume([data], what="raw", path="-")
    stats = compute_stats(vol)
    for q, key in ((1, "pmin"), (99.6, "pmax")):
        assert stats[key] == pytest.approx(float(np.percentile(data, q)), abs=1e-6)
    assert stats["std"] == pytest.approx(float(np.std(data.astype(np.float64))), rel=1e-10)
    const = Volume([np.full((2, 3, 4), 7.5)], what="raw", path="-")
    assert compute_stats(const) == {"mean": 7.5, "std": 0.0, "pmin": 7.5, "pmax": 7.5}


# -- atomic output -----------------------------------------------------------------------------
def test_atomic_output_replaces_only_on_success(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "pred.h5"
    with atomic_output(out) as tmp:
        assert tmp.parent == out.parent and tmp != out
        _h5(tmp, predictions=np.ones((2, 2, 2)))
        assert not out.exists()
    with h5py.File(out, "r") as f:
        assert f["predictions"][:].sum() == 8
    mask = os.umask(0)
    os.umask(mask)
    assert (out.stat().st_mode & 0o777) == (0o666 & ~mask)
    with pytest.raises(RuntimeError), atomic_output(out) as tmp:
        _h5(tmp, predictions=np.zeros((2, 2, 2)))
        raise RuntimeError("disk full")
    with h5py.File(out, "r") as f:  # the old file survived
        assert f["predictions"][:].sum() == 8
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.h5"]  # no temp left
