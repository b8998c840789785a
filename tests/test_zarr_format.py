"""The zarr / OME-Zarr volume format: NGFF metadata written and read, labels, levels,
inputs found in folders, lazy reads for datasets, errors, and unet predict through it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from predict_support import config, read, save_weights, tiny_unet, write_volume

from unet_core import formats
from unet_core.errors import DataError
from unet_core.formats import VolumeInfo
from unet_core.io import Source, expand_file_paths
from unet_core.prediction.output_files import open_output, output_file


def _write_output(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    probs = rng.random((2, 6, 20, 24), dtype=np.float32)
    labels = rng.integers(0, 5, size=(6, 20, 24)).astype(np.uint16)
    info = VolumeInfo((2.0, 0.5, 0.25), "um", "ZYX")
    with open_output(path, "zarr") as out:
        arr = out.create("predictions", probs.shape, np.float32, chunks=(4, 8, 8), info=info)
        arr[...] = probs
        out.write("segmentation", labels, chunks=(4, 8, 8), info=info)
    return probs, labels


def test_output_is_ome_zarr_with_labels_voxel_size_and_aligned_chunks(tmp_path):
    path = tmp_path / "vol_predictions.ome.zarr"
    probs, labels = _write_output(path)
    assert path.is_dir() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    (ms,) = meta["multiscales"]
    assert [a["name"] for a in ms["axes"]] == ["c", "z", "y", "x"]
    assert ms["axes"][1] == {"name": "z", "type": "space", "unit": "micrometer"}
    assert ms["datasets"][0]["path"] == "predictions"
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [1.0, 2.0, 0.5, 0.25]
    labels_meta = json.loads((path / "labels" / "zarr.json").read_text())["attributes"]
    assert labels_meta["ome"]["labels"] == ["segmentation"]
    seg_meta = json.loads((path / "labels/segmentation/zarr.json").read_text())["attributes"]
    assert seg_meta["ome"]["image-label"]["source"]["image"] == "../../"
    root = zarr.open(str(path), mode="r")
    assert root["predictions"].chunks == (1, 4, 8, 8)
    codec = root["predictions"].compressors[0]
    assert type(codec).__name__ == "BloscCodec" and codec.cname.value == "zstd"
    np.testing.assert_array_equal(root["predictions"][...], probs)
    np.testing.assert_array_equal(root["labels/segmentation/0"][...], labels)
    # read back through the format layer by the names that were written
    with Source(str(path)) as src:
        np.testing.assert_array_equal(src.volume("segmentation", key="k").read(), labels)
        info = src.info("predictions")
        assert info.voxel_size == (2.0, 0.5, 0.25) and info.axes == "CZYX"
        assert src.info("segmentation").voxel_size == (2.0, 0.5, 0.25)


def test_failed_output_leaves_nothing(tmp_path):
    path = tmp_path / "x.ome.zarr"
    with pytest.raises(RuntimeError), open_output(path, "zarr") as out:
        out.create("predictions", (4, 8, 8), np.float32)[...] = 1
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _ngff04_image(path: Path) -> np.ndarray:
    """An OME-Zarr image in NGFF 0.4 style (multiscales at the top), two levels."""
    full = np.arange(8 * 16 * 16, dtype=np.uint16).reshape(8, 16, 16)
    group = zarr.open_group(str(path), mode="w")
    group.create_array("0", data=full, chunks=(4, 8, 8))
    group.create_array("1", data=full[::2, ::2, ::2], chunks=(4, 8, 8))
    axes = [{"name": n, "type": "space", "unit": "nanometer"} for n in "zyx"]
    datasets = [
        {"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": [s * 4.0] * 3}]}
        for i, s in enumerate((1, 2))
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return full


def test_reads_full_resolution_by_default_and_a_level_by_its_path(tmp_path):
    path = tmp_path / "img.ome.zarr"
    full = _ngff04_image(path)
    with Source(str(path)) as src:
        volume = src.volume("raw", key="loaders.raw_internal_path")
        assert isinstance(volume._parts[0].data, zarr.Array)  # lazy, not loaded
        np.testing.assert_array_equal(volume[(slice(2, 4),) * 3], full[2:4, 2:4, 2:4])
        assert src.info("raw") == VolumeInfo((4.0, 4.0, 4.0), "nm", "ZYX")
        np.testing.assert_array_equal(src.volume("1", key="k").read(), full[::2, ::2, ::2])
        assert src.info("1").voxel_size == (8.0, 8.0, 8.0)
        with pytest.raises(DataError, match=r"'nope' \(loaders.label_internal_path\).*'0'"):
            src.volume("nope", key="loaders.label_internal_path")
    # a level that does not exist, named as the raw array, is an error, not level 0
    with Source(str(path), raw_name="7") as src:
        with pytest.raises(DataError, match=r"The array '7' \(k\) does not exist"):
            src.volume("7", key="k")


def test_unreachable_url_and_missing_input_are_one_paragraph(tmp_path):
    with pytest.raises(DataError, match="Cannot open http://127.0.0.1:9/x.zarr"):
        Source("http://127.0.0.1:9/x.zarr")
    with pytest.raises(DataError, match="does not exist"):
        formats.get("zarr").open(str(tmp_path / "missing.zarr"))


def test_zarr_folders_are_inputs_and_outputs_named_without_suffix(tmp_path):
    path = tmp_path / "img.ome.zarr"
    _ngff04_image(path)
    (tmp_path / "notes.txt").write_text("x")
    assert expand_file_paths([tmp_path]) == [str(path)]
    assert expand_file_paths([path]) == [str(path)]
    assert output_file(path, None, "zarr") == tmp_path / "img_predictions.ome.zarr"
    assert output_file(path, None, "hdf5") == tmp_path / "img_predictions.h5"


def test_predict_reads_zarr_in_chunks_and_writes_ome_zarr_equal_to_hdf5(tmp_path):
    from unet_core.prediction.run import run_prediction

    rng = np.random.default_rng(0)
    raw = rng.normal(size=(12, 24, 28)).astype(np.float32)
    h5 = write_volume(tmp_path / "vol.h5", raw)
    group = zarr.open_group(str(tmp_path / "vol.zarr"), mode="w")
    group.create_array("raw", data=raw, chunks=(5, 7, 9))  # chunks unlike the patches
    model, spec = tiny_unet()
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    lazy = {"name": "LazyPredictor", "chunks": [4, 8, 8]}
    (ref,) = run_prediction(
        config(spec, ckpt, [h5], tmp_path / "a", dataset="LazyHDF5Dataset", predictor=lazy)
    )
    cfg = config(
        spec,
        ckpt,
        [tmp_path / "vol.zarr"],
        tmp_path / "b",
        dataset="LazyHDF5Dataset",
        predictor={**lazy, "output_format": "zarr"},
    )
    (got,) = run_prediction(cfg)
    assert got.path == str(tmp_path / "b" / "vol_predictions.ome.zarr")
    out = zarr.open(got.path, mode="r")["predictions"]
    assert out.chunks == (1, 4, 8, 8)
    np.testing.assert_allclose(out[...], read(ref.path), atol=1e-6)


def test_data_convert_real_volume_to_ome_zarr_with_labels(sample_data, tmp_path):
    import h5py
    from click.testing import CliRunner

    from unet_core.cli.main import cli as main

    src = sample_data / "nuclei3d_train_a.h5"
    out = tmp_path / "a.ome.zarr"
    args = ["data", "convert", str(src), str(out), "--dataset", "raw", "--dataset", "label"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with h5py.File(src, "r") as f:
        raw, label = f["raw"][...], f["label"][...]
        voxel = tuple(float(v) for v in f["raw"].attrs["element_size_um"])
    with Source(str(out)) as zsrc:
        np.testing.assert_array_equal(zsrc.volume("raw", key="k").read(), raw)
        np.testing.assert_array_equal(zsrc.volume("label", key="k").read(), label)
        assert zsrc.info("raw").voxel_size == pytest.approx(voxel)
    assert (out / "labels" / "label" / "0").is_dir()
    again = CliRunner().invoke(main, args)  # never over an existing output
    assert again.exit_code != 0 and "already exists" in str(again.exception)


def test_ome_zarr_reader_sees_image_and_labels_with_voxel_size(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    path = tmp_path / "vol_predictions.ome.zarr"
    probs, labels = _write_output(path)
    nodes = list(Reader(parse_url(str(path)))())
    image = next(n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs))
    np.testing.assert_array_equal(np.asarray(image.data[0]), probs)
    scale = image.metadata["coordinateTransformations"][0][0]["scale"]
    assert scale == [1.0, 2.0, 0.5, 0.25]
    label = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))
    np.testing.assert_array_equal(np.asarray(label.data[0]), labels)
    assert label.metadata["name"] == "segmentation"


def test_training_dataset_reads_zarr_patches_lazily(tmp_path):
    from unet_core.config.schema import TransformerConfig
    from unet_plugins.datasets.hdf5 import LazyHDF5Dataset

    rng = np.random.default_rng(3)
    raw = rng.normal(size=(8, 32, 32)).astype(np.float32)
    label = (raw > 0).astype(np.uint8)
    group = zarr.open_group(str(tmp_path / "train.zarr"), mode="w")
    group.create_array("raw", data=raw, chunks=(8, 16, 16))
    group.create_array("label", data=label, chunks=(8, 16, 16))
    dataset = LazyHDF5Dataset(
        str(tmp_path / "train.zarr"),
        "train",
        slice_builder={
            "name": "SliceBuilder",
            "patch_shape": [8, 16, 16],
            "stride_shape": [8, 16, 16],
            "skip_shape_check": True,
        },
        transformer=TransformerConfig(
            raw=[{"name": "ToTensor", "expand_dims": True}],
            label=[{"name": "ToTensor", "expand_dims": True}],
        ),
        names={"raw": "raw", "label": "label"},
    )
    assert len(dataset) == 4
    x, y = dataset[3]
    np.testing.assert_array_equal(x.numpy()[0], raw[:, 16:32, 16:32])
    np.testing.assert_array_equal(y.numpy()[0], label[:, 16:32, 16:32])
    opened = dataset._open("raw")
    volume = getattr(opened, "volume", opened)  # under the non-finite check's view
    assert isinstance(volume._parts[0].data, zarr.Array)  # never loaded whole


def test_round_trip_hdf5_to_ome_zarr_predict_evaluate_equals_hdf5(sample_data, tmp_path):
    """Real volume: HDF5 -> OME-Zarr (unet data convert) -> prediction -> evaluation scores
    the same as the all-HDF5 path."""
    from unet_core.config import as_config
    from unet_core.conversion import convert
    from unet_core.prediction.run import run_prediction
    from unet_core.prediction.score_files import evaluate_config

    src = sample_data / "nuclei3d_train_a.h5"
    zarr_in = tmp_path / "nuclei.ome.zarr"
    convert(str(src), str(zarr_in), ["raw", "label"])
    model, spec = tiny_unet(out_channels=1, final_sigmoid=True)
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    lazy = {"name": "LazyPredictor", "chunks": [32, 64, 64], "compression": "none"}
    scores = []
    for name, inp, fmt in (("h5", src, "hdf5"), ("zarr", zarr_in, "zarr")):
        cfg = config(
            spec,
            ckpt,
            [inp],
            tmp_path / name,
            patch=(32, 64, 64),
            stride=(24, 48, 48),
            halo=(0, 0, 0),
            dataset="LazyHDF5Dataset",
            predictor={**lazy, "output_format": fmt},
        )
        run_prediction(cfg)
        (score,) = evaluate_config(as_config(cfg), [{"name": "MeanIoU"}])
        scores.append(score.value)
    assert (tmp_path / "zarr" / "nuclei_predictions.ome.zarr").is_dir()
    assert 0.0 <= scores[1] <= 1.0
    assert scores[1] == pytest.approx(scores[0], abs=1e-6)


def test_convert_with_a_pyramid_of_levels(tmp_path):
    import h5py

    from unet_core.conversion import convert

    rng = np.random.default_rng(4)
    raw = rng.integers(0, 255, size=(6, 20, 18)).astype(np.uint8)
    label = rng.integers(0, 4, size=(6, 20, 18)).astype(np.uint16)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f.create_dataset("raw", data=raw).attrs["element_size_um"] = [2.0, 1.0, 1.0]
        f.create_dataset("label", data=label)
    out = tmp_path / "v.ome.zarr"
    convert(str(tmp_path / "v.h5"), str(out), ["raw", "label"], chunks=(4, 8, 8), levels=2)
    root = zarr.open(str(out), mode="r")
    mean = raw.astype(np.float64).reshape(3, 2, 10, 2, 9, 2).mean(axis=(1, 3, 5))
    np.testing.assert_array_equal(root["raw_1"][...], np.rint(mean).astype(np.uint8))
    assert root["raw_2"].shape == (2, 5, 5)
    np.testing.assert_array_equal(root["labels/label/1"][...], label[::2, ::2, ::2])
    with Source(str(out)) as src:
        assert src.info("raw").voxel_size == (2.0, 1.0, 1.0)
        assert src.info("raw_2").voxel_size == (8.0, 4.0, 4.0)
        assert src.info("labels/label/1").voxel_size == (2.0, 2.0, 2.0)  # label had none


def test_fsspec_urls_are_read_through_zarr_itself():
    data = np.arange(2 * 6 * 8, dtype=np.float32).reshape(2, 6, 8)
    group = zarr.open_group("memory://unet-test/url.zarr", mode="w")
    group.create_array("raw", data=data, chunks=(1, 3, 4))
    with Source("memory://unet-test/url.zarr") as src:
        np.testing.assert_array_equal(src.volume("raw", key="k")[(slice(1, 2),)], data[1:2])


def test_predict_reads_a_zarr_served_over_http(tmp_path, http_server):
    """An https:// or s3:// input needs no code of ours: fsspec's HTTP file system (a real
    server on 127.0.0.1 here) gives the same prediction as the local folder."""
    from unet_core.prediction.run import run_prediction

    raw = np.random.default_rng(2).normal(size=(10, 20, 24)).astype(np.float32)
    local = http_server.folder / "vol.zarr"
    zarr.open_group(str(local), mode="w").create_array("raw", data=raw, chunks=(5, 7, 9))
    model, spec = tiny_unet()
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    lazy = {"name": "LazyPredictor", "chunks": [4, 8, 8], "output_format": "zarr"}
    written = {}
    for name, source in (("local", str(local)), ("url", f"{http_server.url}/vol.zarr")):
        cfg = config(
            spec, ckpt, [source], tmp_path / name, dataset="LazyHDF5Dataset", predictor=lazy
        )
        (written[name],) = run_prediction(cfg)
    assert any(p.startswith("/vol.zarr/raw/c/") for p in http_server.paths)  # chunks by HTTP
    got = zarr.open(written["url"].path, mode="r")["predictions"][...]
    np.testing.assert_array_equal(
        got, zarr.open(written["local"].path, mode="r")["predictions"][...]
    )
