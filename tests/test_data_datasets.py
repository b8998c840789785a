"""Datasets on the real volumes: items, halo, normalization, TIFF, DSB folders, weights, errors."""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import shutil
import stat
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile
import torch

from unet_core.config.schema import ExperimentConfig
from unet_core.engine.data import build_datasets, build_test_datasets
from unet_core.errors import ConfigError, DataError

RAW_T = [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]
LABEL_T = [{"name": "ToTensor", "expand_dims": False, "dtype": "int64"}]
AUG_RAW = [
    {"name": "Standardize"},
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    {"name": "ToTensor", "expand_dims": True},
]
AUG_LABEL = [
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    {"name": "ToTensor", "expand_dims": False, "dtype": "int64"},
]


def experiment(loaders: dict[str, Any], **top: Any) -> ExperimentConfig:
    data = {"model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1}, "loaders": loaders}
    return ExperimentConfig.model_validate({**data, **top})


def phase(
    files: list[Any],
    patch=(32, 64, 64),
    stride=(32, 64, 64),
    raw=None,
    label=None,
    builder="SliceBuilder",
    **builder_params: Any,
) -> dict[str, Any]:
    return {
        "file_paths": [str(f) for f in files],
        "slice_builder": {
            "name": builder,
            "patch_shape": list(patch),
            "stride_shape": list(stride),
            **builder_params,
        },
        "transformer": {"raw": raw or RAW_T, "label": label or LABEL_T},
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def nuclei_a(sample_data: Path) -> dict[str, np.ndarray]:
    with h5py.File(sample_data / "nuclei3d_train_a.h5", "r") as f:
        return {"raw": f["raw"][:], "label": f["label"][:]}


@pytest.mark.parametrize("dataset", ["StandardHDF5Dataset", "LazyHDF5Dataset"])
def test_train_items_are_the_patches(sample_data: Path, nuclei_a, dataset: str) -> None:
    label_t = [{"name": "ToTensor", "expand_dims": True, "dtype": "int64"}]
    cfg = experiment(
        {
            "dataset": dataset,
            "train": phase(
                [sample_data / "nuclei3d_train_a.h5"],
                patch=(64, 64, 64),
                stride=(32, 32, 32),
                raw=[{"name": "ToTensor", "expand_dims": True}],
                label=label_t,
            ),
        }
    )
    (ds,) = build_datasets(cfg, "train")
    assert len(ds) == 27 and ds.volume_shape == (100, 100, 100)
    for i in (0, 13, 26):
        raw, label = ds[i]
        idx = ds.raw_slices[i]
        assert raw.shape == (1, 64, 64, 64) and raw.dtype == torch.float32
        assert label.shape == (1, 64, 64, 64) and label.dtype == torch.int64
        np.testing.assert_array_equal(raw[0].numpy(), nuclei_a["raw"][idx].astype(np.float32))
        np.testing.assert_array_equal(label[0].numpy(), nuclei_a["label"][idx])
    with pytest.raises(IndexError):
        ds[27]


def test_standard_and_lazy_agree_with_augmentation(sample_data: Path) -> None:
    items = {}
    for dataset in ("StandardHDF5Dataset", "LazyHDF5Dataset"):
        cfg = experiment(
            {
                "dataset": dataset,
                "global_normalization": True,
                "train": phase(
                    [sample_data / "ovule_boundary.h5"],
                    patch=(16, 64, 64),
                    stride=(16, 64, 64),
                    raw=AUG_RAW,
                    label=AUG_LABEL,
                ),
            }
        )
        (ds,) = build_datasets(cfg, "train")
        torch.manual_seed(5)
        items[dataset] = [ds[i] for i in range(len(ds))]
    for a, b in zip(items["StandardHDF5Dataset"], items["LazyHDF5Dataset"]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_spatial_transforms_keep_raw_and_label_aligned(tmp_path: Path, sample_data: Path) -> None:
    # label = raw: after random flips/rotations (same seed per sample) they must still agree
    with h5py.File(sample_data / "ovule_boundary.h5", "r") as f:
        raw = f["raw"][:]
    path = tmp_path / "same.h5"
    with h5py.File(path, "w") as f:
        f["raw"], f["label"] = raw, raw
    raw_t = [
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "ToTensor", "expand_dims": False, "dtype": "int64"},
    ]
    cfg = experiment(
        {"train": phase([path], patch=(16, 64, 64), stride=(8, 32, 32), raw=raw_t, label=raw_t)}
    )
    (ds,) = build_datasets(cfg, "train")
    torch.manual_seed(0)
    changed = 0
    for i in range(len(ds)):
        x, y = ds[i]
        assert torch.equal(x, y)
        changed += not np.array_equal(x.numpy(), raw[ds.raw_slices[i]])
    assert changed > len(ds) // 2  # the augmentation did act


@pytest.mark.parametrize("dataset", ["StandardHDF5Dataset", "LazyHDF5Dataset"])
def test_test_phase_halo_crops_to_the_patch(sample_data: Path, dataset: str) -> None:
    halo = (4, 8, 6)
    path = sample_data / "ovule_boundary.h5"
    with h5py.File(path, "r") as f:
        raw = f["raw"][:]
    test = phase(
        [path],
        patch=(16, 64, 64),
        stride=(8, 48, 48),
        halo_shape=list(halo),
        raw=[{"name": "ToTensor", "expand_dims": True}],
    )
    del test["transformer"]["label"]
    cfg = experiment({"dataset": dataset, "test": test})
    (ds,) = build_test_datasets(cfg)
    assert ds.halo_shape == halo and ds.volume_shape == (32, 128, 128) and len(ds) == 27
    padded = np.pad(raw, [(h, h) for h in halo], mode="reflect")
    visited = np.zeros(raw.shape, bool)
    for i in range(len(ds)):
        x, index = ds[i]
        assert len(index) == 3 and x.shape == (1, 16 + 8, 64 + 16, 64 + 12)
        inner = x[0, halo[0] : -halo[0], halo[1] : -halo[1], halo[2] : -halo[2]].numpy()
        np.testing.assert_array_equal(inner, raw[index].astype(np.float32))
        z, y, xs = index
        want = padded[
            z.start : z.stop + 2 * halo[0],
            y.start : y.stop + 2 * halo[1],
            xs.start : xs.stop + 2 * halo[2],
        ]
        np.testing.assert_array_equal(x[0].numpy(), want.astype(np.float32))
        visited[index] = True
    assert visited.all()
    batch, indices = ds.collate_fn([ds[0], ds[1]])
    assert batch.shape == (2, 1, 24, 80, 76) and indices == [ds[0][1], ds[1][1]]


def test_lazy_never_writes_the_input(sample_data: Path, tmp_path: Path) -> None:
    path = tmp_path / "input.h5"
    shutil.copy(sample_data / "nuclei3d_train_b.h5", path)
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)  # read-only: opening it "r+" would fail
    before = sha256(path)
    test = phase([path], patch=(64, 64, 64), stride=(32, 32, 32), halo_shape=[8, 16, 16])
    cfg = experiment(
        {
            "dataset": "LazyHDF5Dataset",
            "global_normalization": True,
            "test": test,
            "train": phase(
                [path], patch=(64, 64, 64), stride=(32, 32, 32), raw=AUG_RAW, label=AUG_LABEL
            ),
        }
    )
    (ds,) = build_test_datasets(cfg)
    for i in range(len(ds)):
        ds[i]
    (train,) = build_datasets(cfg, "train")
    for i in range(len(train)):
        train[i]
    assert sha256(path) == before
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["label", "raw"]  # no raw_padded cache


def test_pickles_small_without_open_files(sample_data: Path) -> None:
    for dataset in ("StandardHDF5Dataset", "LazyHDF5Dataset"):
        cfg = experiment(
            {"dataset": dataset, "train": phase([sample_data / "nuclei3d_train_a.h5"])}
        )
        (ds,) = build_datasets(cfg, "train")
        first = ds[0]  # loads / opens in this process
        blob = pickle.dumps(ds)
        assert len(blob) < 100_000  # no 1 MB volume inside
        clone = pickle.loads(blob)
        assert torch.equal(clone[0][0], first[0])


def test_global_normalization_stats(sample_data: Path, nuclei_a) -> None:
    cfg = experiment(
        {
            "global_normalization": True,
            "train": phase([sample_data / "nuclei3d_train_a.h5"], raw=RAW_T),
        }
    )
    (ds,) = build_datasets(cfg, "train")
    raw = nuclei_a["raw"]
    assert ds.stats["pmin"] == np.percentile(raw, 1) and ds.stats["pmax"] == np.percentile(
        raw, 99.6
    )
    assert ds.stats["mean"] == pytest.approx(raw.mean()) and ds.stats["std"] == pytest.approx(
        raw.std()
    )
    x, _ = ds[0]
    want = (raw[ds.raw_slices[0]] - raw.mean()) / raw.std()
    np.testing.assert_allclose(x[0].numpy(), want, rtol=1e-5, atol=1e-5)
    cfg = experiment({"train": phase([sample_data / "nuclei3d_train_a.h5"])})
    assert build_datasets(cfg, "train")[0].stats is None


def test_tiff_label_of_another_shape_names_its_own_file(tmp_path: Path) -> None:
    raw, label = tmp_path / "vol_raw.tif", tmp_path / "vol_label.tif"
    tifffile.imwrite(raw, np.zeros((20, 64, 64), np.uint8))
    tifffile.imwrite(label, np.zeros((20, 64, 32), np.uint8))
    cfg = experiment({"train": phase([raw], patch=(8, 64, 64), stride=(8, 64, 64))})
    with pytest.raises(DataError) as info:
        build_datasets(cfg, "train")
    message = str(info.value)
    assert f"In {raw} the raw data 'raw' is (20, 64, 64)" in message
    assert f"the label 'label' ({label}) is (20, 64, 32)" in message


def test_tiff_2d_dataset(sample_data: Path) -> None:
    raw = tifffile.imread(sample_data / "nuclei2d_raw.tif")
    labels = tifffile.imread(sample_data / "nuclei2d_labels.tif")
    cfg = experiment(
        {
            "label_internal_path": "labels",
            "train": phase(
                [sample_data / "nuclei2d_raw.tif"],
                patch=(1, 128, 128),
                stride=(1, 96, 96),
                builder="FilterSliceBuilder",
                threshold=0.2,
                slack_acceptance=0.05,
            ),
        }
    )
    (ds,) = build_datasets(cfg, "train")
    assert len(ds) == 13 and ds.volume_shape == (1, 512, 512)  # as the reference keeps
    x, y = ds[3]
    idx = ds.raw_slices[3]
    assert x.shape == (1, 1, 128, 128) and y.shape == (1, 128, 128)
    np.testing.assert_array_equal(y.numpy(), labels[None][idx])
    assert np.allclose(x[0, 0].mean().item(), 0, atol=1e-5)  # standardized per patch
    assert raw[None][idx].shape == (1, 128, 128)
    bad = experiment(
        {
            "train": phase(
                [sample_data / "nuclei2d_raw.tif"], patch=(1, 128, 128), stride=(1, 96, 96)
            )
        }
    )
    with pytest.raises(DataError, match="nuclei2d_label.tif.*nuclei2d_labels.tif"):
        build_datasets(bad, "train")


def _dsb_folder(root: Path, sample_data: Path, masks: bool = True) -> list[str]:
    raw = tifffile.imread(sample_data / "nuclei2d_raw.tif")
    labels = tifffile.imread(sample_data / "nuclei2d_labels.tif")
    (root / "images").mkdir(parents=True)
    if masks:
        (root / "masks").mkdir()
    names = ["c_img", "a_img", "b_img"]
    for k, name in enumerate(names):
        tile = (slice(128 * k, 128 * k + 256), slice(0, 256))
        tifffile.imwrite(root / "images" / f"{name}.tif", raw[tile])
        if masks:  # written in another order, so listdir order differs
            tifffile.imwrite(root / "masks" / f"{name}.tif", labels[tile])
    return sorted(names)


def test_dsb_folders_pair_by_stem(sample_data: Path, tmp_path: Path) -> None:
    raw = tifffile.imread(sample_data / "nuclei2d_raw.tif")
    labels = tifffile.imread(sample_data / "nuclei2d_labels.tif")
    names = _dsb_folder(tmp_path / "one", sample_data)
    _dsb_folder(tmp_path / "two", sample_data)
    label_t = [{"name": "ToTensor", "expand_dims": False, "dtype": "int64"}]
    raw_t = [{"name": "ToTensor", "expand_dims": True}]
    train = {
        "file_paths": [str(tmp_path / "one"), str(tmp_path / "two")],
        "transformer": {"raw": raw_t, "label": label_t},
    }
    cfg = experiment({"dataset": "DSB2018Dataset", "train": train})
    datasets = build_datasets(cfg, "train")
    assert len(datasets) == 2 and [len(d) for d in datasets] == [3, 3]  # every folder used
    ds = datasets[0]
    assert [Path(p).stem for p in ds.paths] == names
    for k, name in enumerate(names):
        x, y = ds[k]
        offset = {"a_img": 1, "b_img": 2, "c_img": 0}[name] * 128
        tile = (slice(offset, offset + 256), slice(0, 256))
        assert x.shape == (1, 1, 256, 256) and y.shape == (1, 256, 256)
        np.testing.assert_array_equal(x[0, 0].numpy(), raw[tile].astype(np.float32))
        np.testing.assert_array_equal(y[0].numpy(), labels[tile])
    test = {"file_paths": [str(tmp_path / "one")], "transformer": {"raw": raw_t}}
    (tds,) = build_test_datasets(experiment({"dataset": "DSB2018Dataset", "test": test}))
    batch, paths = tds.collate_fn([tds[0], tds[2]])
    assert batch.shape == (2, 1, 1, 256, 256)
    assert [Path(p).name for p in paths] == ["a_img.tif", "c_img.tif"]


def test_dsb_errors(sample_data: Path, tmp_path: Path) -> None:
    _dsb_folder(tmp_path / "d", sample_data)
    (tmp_path / "d" / "masks" / "b_img.tif").rename(tmp_path / "d" / "masks" / "b_mask.tif")
    train = {"file_paths": [str(tmp_path / "d")], "transformer": {"raw": RAW_T, "label": LABEL_T}}
    cfg = experiment({"dataset": "DSB2018Dataset", "train": train})
    with pytest.raises(DataError, match="without a mask: b_img; masks without an image: b_mask"):
        build_datasets(cfg, "train")
    (tmp_path / "e" / "images").mkdir(parents=True)
    train["file_paths"] = [str(tmp_path / "e")]
    with pytest.raises(DataError, match="contains no images"):
        build_datasets(experiment({"dataset": "DSB2018Dataset", "train": train}), "train")
    train["file_paths"] = [str(tmp_path / "missing")]
    with pytest.raises(DataError, match="missing.*does not exist"):
        build_datasets(experiment({"dataset": "DSB2018Dataset", "train": train}), "train")


def test_weights_loaded_only_when_the_loss_needs_them(tmp_path: Path, nuclei_a) -> None:
    path = tmp_path / "w.h5"
    weight = np.linspace(0, 1, nuclei_a["raw"].size, dtype=np.float32).reshape(100, 100, 100)
    with h5py.File(path, "w") as f:
        f["raw"], f["label"], f["weight"] = nuclei_a["raw"], nuclei_a["label"], weight
    loaders = {
        "weight_internal_path": "weight",
        "train": phase(
            [path], patch=(64, 64, 64), stride=(36, 36, 36), raw=AUG_RAW, label=AUG_LABEL
        ),
    }
    (plain,) = build_datasets(experiment(loaders, loss={"name": "CrossEntropyLoss"}), "train")
    assert len(plain[0]) == 2
    (ds,) = build_datasets(experiment(loaders, loss={"name": "PixelWiseCrossEntropyLoss"}), "train")
    torch.manual_seed(1)
    for i in range(len(ds)):
        x, y, w = ds[i]
        assert w.shape == y.shape == (64, 64, 64) and w.dtype == torch.float32
        # the weight went through the same flips/rotations as the label (no weight list given)
        idx = ds.raw_slices[i]
        assert np.isclose(w.sum().item(), weight[idx].sum(), rtol=1e-4)
    no_name = copy.deepcopy(loaders)
    del no_name["weight_internal_path"]
    with pytest.raises(ConfigError, match="weight_internal_path"):
        build_datasets(experiment(no_name, loss={"name": "PixelWiseCrossEntropyLoss"}), "train")


def test_random_scale_only_in_train_and_keeps_patch_shape(
    tmp_path: Path, sample_data: Path
) -> None:
    raw = tifffile.imread(sample_data / "nuclei2d_raw.tif")
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        f["raw"] = np.stack([raw[:200, :200]] * 12)
        f["label"] = (f["raw"][:] > 50).astype(np.uint8)
    ph = phase([path], patch=(8, 64, 64), stride=(4, 32, 32))
    cfg = experiment({"random_scale": 3, "random_scale_probability": 1.0, "train": ph, "val": ph})
    (train,) = build_datasets(cfg, "train")
    (val,) = build_datasets(cfg, "val")
    assert train.random_scale is not None and val.random_scale is None
    torch.manual_seed(0)
    differs = 0
    for i in range(len(train)):
        x, y = train[i]
        assert x.shape == (1, 8, 64, 64) and y.shape == (8, 64, 64)
        differs += not np.array_equal(y.numpy(), val[i][1].numpy())
        np.testing.assert_array_equal(val[i][1].numpy(), f_label(path, val, i))  # unscaled
    assert differs > len(train) // 2
    # singleton z (2D) is never touched
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["raw"], f["label"] = raw[None], (raw[None] > 50).astype(np.uint8)
    cfg2 = experiment(
        {
            "random_scale": 20,
            "random_scale_probability": 1.0,
            "train": phase([tmp_path / "flat.h5"], patch=(1, 128, 128), stride=(1, 96, 96)),
        }
    )
    (flat,) = build_datasets(cfg2, "train")
    for i in range(len(flat)):
        assert flat[i][0].shape == (1, 1, 128, 128)
    with pytest.raises(ConfigError, match="random_scale .* smaller than every entry"):
        build_datasets(experiment({"random_scale": 4, "train": ph}), "train")


def f_label(path: Path, ds: Any, i: int) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["label"][ds.label_slices[i]].astype(np.int64)


def test_bad_inputs_have_clear_messages(tmp_path: Path, sample_data: Path) -> None:
    path = sample_data / "nuclei3d_train_a.h5"
    cfg = experiment({"label_internal_path": "segmentation", "train": phase([path])})
    with pytest.raises(DataError, match="'segmentation'.*Datasets in this file: 'label'"):
        build_datasets(cfg, "train")
    mismatch = tmp_path / "m.h5"
    with h5py.File(mismatch, "w") as f:
        f["raw"], f["label"] = np.zeros((40, 70, 70)), np.zeros((40, 70, 69))
    with pytest.raises(DataError, match=r"m.h5 the raw data 'raw' is \(40, 70, 70\).*label"):
        build_datasets(experiment({"train": phase([mismatch])}), "train")
    small = phase([path], patch=(128, 64, 64), stride=(64, 64, 64))
    with pytest.raises(DataError, match=r"nuclei3d_train_a.h5 \(train\).*along Z \(100 < 128\)"):
        build_datasets(experiment({"train": small}), "train")
    with pytest.raises(DataError, match="does not exist"):
        build_datasets(experiment({"train": phase([tmp_path / "nope.h5"])}), "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="contains no input files"):
        build_datasets(experiment({"train": phase([tmp_path / "empty"])}), "train")
    no_builder = {"file_paths": [str(path)], "transformer": {"raw": RAW_T}}
    with pytest.raises(ConfigError, match="slice_builder is missing"):
        build_datasets(experiment({"train": no_builder}), "train")
    with pytest.raises(ConfigError, match="raw_internal_pth"):
        build_datasets(experiment({"raw_internal_pth": "x", "train": phase([path])}), "train")


def test_prediction_collate_refuses_mixed_shapes() -> None:
    from unet_plugins.datasets.collate import prediction_collate

    batch = [(torch.zeros(1, 1, 8, 8), "a.png"), (torch.zeros(1, 1, 8, 9), "b.png")]
    with pytest.raises(DataError, match="different shapes.*batch_size: 1.*CropToFixed"):
        prediction_collate(batch)
