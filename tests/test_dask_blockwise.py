"""Block-wise work on a real Dask LocalCluster beyond prediction itself: the `blockwise`
predictor capability (a third-party predictor takes part, one without it is refused), seeded
watershed on Dask against the in-process watershed, pyramids of the outputs, and a worker
running out of memory."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from blockwise_plugin import SigmoidPredictor, WholeVolumePredictor
from predict_support import config, save_weights, tiny_unet, write_volume

from unet_core import registry
from unet_core.errors import ConfigError, DataError, PluginError
from unet_core.prediction.run import run_prediction

distributed = pytest.importorskip("distributed")

SHAPE = (8, 24, 24)


@pytest.fixture(scope="module")
def plugins():
    for name, cls in (("SigmoidPredictor", SigmoidPredictor), ("Whole", WholeVolumePredictor)):
        registry.register("predictors", name, cls, replace=True)
    yield
    for name in ("SigmoidPredictor", "Whole"):
        registry.default_registry.unregister("predictors", name)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("blockwise")
    raw = np.random.default_rng(2).normal(size=SHAPE).astype(np.float32)
    model, spec = tiny_unet()
    return {
        "tmp": tmp,
        "raw": raw,
        "h5": write_volume(tmp / "vol.h5", raw),
        "spec": spec,
        "ckpt": save_weights(model, tmp / "m.pytorch"),
    }


def _cfg(volume, out, predictor, **top):
    return config(
        volume["spec"],
        volume["ckpt"],
        [volume["h5"]],
        out,
        patch=(4, 8, 8),
        stride=(4, 8, 8),
        halo=(0, 0, 0),
        dataset="LazyHDF5Dataset",
        raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
        predictor=predictor,
        **top,
    )


def _allocator_setting() -> bool | None:
    from unet_core.engine import allocator

    return allocator._applied


def test_a_third_party_blockwise_predictor_runs_on_dask(plugins, cluster, volume, tmp_path):
    dist = {"scheduler": cluster.scheduler_address}
    cfg = _cfg(volume, tmp_path / "dask", {"name": "SigmoidPredictor"}, distributed=dist)
    (written,) = run_prediction(cfg)
    assert written.stats["blocks"] == 1 * 2 * 2  # blocks of 2 x chunks (4, 8, 8)
    got = zarr.open(written.path, mode="r")["predictions"][...]
    np.testing.assert_allclose(got[0], 1 / (1 + np.exp(-volume["raw"])), atol=1e-6)
    with distributed.Client(cluster) as client:  # a worker that predicted keeps freed memory
        kept = list(client.run(_allocator_setting).values())
    assert True in kept and set(kept) <= {True, None}, kept
    run_prediction(_cfg(volume, tmp_path / "single", {"name": "SigmoidPredictor"}))
    single = zarr.open(str(tmp_path / "single/vol_predictions.ome.zarr"), mode="r")
    np.testing.assert_array_equal(got, single["predictions"][...])


def test_a_predictor_without_the_capability_is_refused_by_name(plugins, volume, tmp_path):
    cfg = _cfg(volume, tmp_path / "out", {"name": "Whole"}, distributed={"workers": 1})
    with pytest.raises(ConfigError, match=r"predictor Whole cannot run block by block.*blockwise"):
        run_prediction(cfg)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_declaring_blockwise_without_its_members_is_a_broken_plugin():
    class Half(WholeVolumePredictor):
        blockwise = True
        stored = None  # type: ignore[assignment]

    with pytest.raises(PluginError, match=r"declares `blockwise` but lacks `stored`"):
        registry.register("predictors", "Half", Half)
    assert "Half" not in registry.list("predictors")


def _cells(shape=(16, 40, 40), n=14, radius=5.0, seed=3):
    """Probabilities (boundary, foreground) of touching round cells, smoothed like a network's."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    centres = rng.uniform([2, 4, 4], np.subtract(shape, [2, 4, 4]), size=(n, 3))
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    distances = np.linalg.norm(grid[..., None, :] - centres, axis=-1)
    nearest = distances.argmin(-1)
    inside = distances.min(-1) < radius
    labels = np.where(inside, nearest + 1, 0)
    edges = ndi.morphological_gradient(labels, size=3) > 0
    boundary = ndi.gaussian_filter(edges.astype(np.float32), 0.7)
    foreground = ndi.gaussian_filter(inside.astype(np.float32), 0.7)
    return np.stack([boundary / boundary.max(), foreground]).astype(np.float32)


@pytest.mark.parametrize(
    ("min_size", "merge_threshold"),
    [(0, None), (40, None), (0, 0.8), (40, 0.8)],
)
def test_seeded_watershed_on_dask_equals_the_whole_volume_watershed(
    cluster, tmp_path, min_size, merge_threshold
):
    from unet_core.prediction.dask_blocks import BlockReader
    from unet_plugins.postprocessors.instances import SeededWatershed

    probs = _cells()
    source = zarr.open_array(
        str(tmp_path / "p.zarr"), mode="w", shape=probs.shape, chunks=(1, 8, 16, 16), dtype="f4"
    )
    source[...] = probs
    out = zarr.open_array(
        str(tmp_path / "l.zarr"), mode="w", shape=probs.shape[1:], chunks=(8, 16, 16), dtype="u4"
    )
    # with merging: unsmoothed seeds a voxel apart cut the cells into fragments, which the
    # agglomeration (contacts counted per block) joins again
    merging = merge_threshold is not None
    settings = dict(
        boundary_channel=0,
        foreground_channel=1,
        min_distance=1 if merging else 2,
        sigma=0.0 if merging else 1.0,
        min_size=min_size,
        block_halo=20,  # > a cell's diameter (10) + min_distance + 4 sigma
    )
    post = SeededWatershed(SeededWatershed.Config(**settings, merge_threshold=merge_threshold))
    expected = post(probs)
    if merging:
        fragments = SeededWatershed(SeededWatershed.Config(**settings))(probs)
        assert fragments.max() >= expected.max() + 4
    with distributed.Client(cluster) as client:
        n = post.segment_dask(
            client,
            BlockReader(source, 1.0),
            probs.shape[1:],
            (8, 16, 16),  # 2 x 3 x 3 blocks: every cell is cut by some block face
            lambda n: out.__setitem__,
            scratch_dir=str(tmp_path),
        )
    assert n == int(expected.max()) and n > 8
    np.testing.assert_array_equal(out[...], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.zarr", "p.zarr"]  # no scratch left


def _ome_levels(path):
    """(image levels, image scales, label levels, label scales) through ome-zarr's reader."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    nodes = list(Reader(parse_url(str(path)))())
    image = next(n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs))
    label = next(n for n in nodes if any(isinstance(s, Label) for s in n.specs))

    def scales(node):
        return [t[0]["scale"] for t in node.metadata["coordinateTransformations"]]

    return (
        [np.asarray(d) for d in image.data],
        scales(image),
        [np.asarray(d) for d in label.data],
        scales(label),
    )


LAZY_ZARR = {"name": "LazyPredictor", "chunks": [4, 8, 8], "output_format": "zarr"}


def test_prediction_pyramid_levels_read_back_with_ome_zarr(volume, tmp_path):
    from unet_plugins.formats.pyramid import block_mean

    cfg = _cfg(
        volume,
        tmp_path,
        {**LAZY_ZARR, "pyramid_levels": 2},
        postprocessor={"name": "ConnectedComponents", "threshold": 0.5},
    )
    (written,) = run_prediction(cfg)
    images, image_scales, labels, label_scales = _ome_levels(written.path)
    assert [a.shape for a in images] == [(2, 8, 24, 24), (2, 4, 12, 12), (2, 2, 6, 6)]
    assert image_scales == [[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 2.0, 2.0], [1.0, 4.0, 4.0, 4.0]]
    np.testing.assert_allclose(images[1], block_mean(images[0], (2, 2, 2)), atol=1e-6)
    np.testing.assert_allclose(images[2], block_mean(images[1], (2, 2, 2)), atol=1e-6)
    assert len(labels) == 3 and label_scales[2] == [4.0, 4.0, 4.0]
    np.testing.assert_array_equal(labels[1], labels[0][::2, ::2, ::2])  # nearest: no new ids
    np.testing.assert_array_equal(labels[2], labels[0][::4, ::4, ::4])


def test_pyramid_on_hdf5_output_is_refused_up_front(volume, tmp_path):
    cfg = _cfg(volume, tmp_path, {**LAZY_ZARR, "output_format": "hdf5", "pyramid_levels": 1})
    with pytest.raises(ConfigError, match=r"pyramid_levels: 1 .*hdf5.*output_format: zarr"):
        run_prediction(cfg)
    assert list(tmp_path.iterdir()) == []


def test_dask_watershed_and_pyramid_equal_the_single_process_output(cluster, volume, tmp_path):
    post = {
        "name": "SeededWatershed",
        "boundary_channel": None,
        "foreground_channel": 0,
        "mask_threshold": 0.5,
        "block_halo": 32,  # more than the volume: each window is the whole volume
    }
    predictor = {**LAZY_ZARR, "pyramid_levels": 1}
    (single,) = run_prediction(_cfg(volume, tmp_path / "single", predictor, postprocessor=post))
    dist = {"scheduler": cluster.scheduler_address}
    cfg = _cfg(volume, tmp_path / "dask", predictor, postprocessor=post, distributed=dist)
    (dask,) = run_prediction(cfg)
    a, b = zarr.open(single.path, mode="r"), zarr.open(dask.path, mode="r")
    for name in ("predictions", "predictions_1"):
        np.testing.assert_allclose(b[name][...], a[name][...], atol=1e-6)
    for level in ("0", "1"):
        np.testing.assert_array_equal(
            b[f"labels/segmentation/{level}"][...], a[f"labels/segmentation/{level}"][...]
        )
    assert b["labels/segmentation/0"][...].max() > 1


def test_a_block_beyond_the_worker_memory_limit_is_one_paragraph(plugins, volume, tmp_path):
    import dask

    dist = {"workers": 1, "memory_limit": "700MB", "block_shape": [8, 24, 24]}
    cfg = _cfg(volume, tmp_path, {"name": "SigmoidPredictor", "hog_mb": 1500}, distributed=dist)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(DataError) as err:
            run_prediction(cfg)
    text = str(err.value)
    assert "Block (0, 0, 0) (voxels 0:8, 0:24, 0:24) of " in text and str(volume["h5"]) in text
    assert "memory limit is 667.57 MiB" in text and "distributed.memory_limit" in text
    assert "\n" not in text
    assert not (tmp_path / "vol_predictions.ome.zarr").exists()  # never under the final name
    assert (tmp_path / ".vol_predictions.ome.zarr.partial").is_dir()  # kept for the rerun


def test_napari_reader_plugin_opens_the_output_headless_with_the_voxel_size(tmp_path):
    """napari's own reader plugin (napari-ome-zarr through npe2), without a viewer or display."""
    import h5py

    npe2 = pytest.importorskip("npe2")
    pytest.importorskip("napari_ome_zarr")
    raw = np.random.default_rng(4).normal(size=SHAPE).astype(np.float32)
    with h5py.File(tmp_path / "vol.h5", "w") as f:
        f.create_dataset("raw", data=raw).attrs["element_size_um"] = [2.0, 0.5, 0.25]
    model, spec = tiny_unet()
    cfg = config(
        spec,
        save_weights(model, tmp_path / "m.pytorch"),
        [tmp_path / "vol.h5"],
        tmp_path / "out",
        patch=(4, 8, 8),
        stride=(4, 8, 8),
        halo=(0, 0, 0),
        dataset="LazyHDF5Dataset",
        predictor={**LAZY_ZARR, "pyramid_levels": 1},
        postprocessor={"name": "ConnectedComponents", "threshold": 0.5},
    )
    (written,) = run_prediction(cfg)
    npe2.PluginManager.instance().discover()
    layers = npe2.read([written.path], plugin_name="napari-ome-zarr", stack=False)
    kinds = {kind: (data, meta) for data, meta, kind in layers}
    data, meta = kinds["image"]
    assert meta["scale"] == [2.0, 0.5, 0.25] and meta["channel_axis"] == 0
    assert [tuple(d.shape) for d in data] == [(2, *SHAPE), (2, 4, 12, 12)]
    stored = zarr.open(written.path, mode="r")
    np.testing.assert_array_equal(np.asarray(data[0]), stored["predictions"][...])
    labels, label_meta = kinds["labels"]
    assert label_meta["scale"] == [2.0, 0.5, 0.25]
    np.testing.assert_array_equal(np.asarray(labels[0]), stored["labels/segmentation/0"][...])


@pytest.mark.parametrize("connectivity", [1, 2, 3])
def test_block_labelling_with_cc3d_or_scipy_gives_the_same_labels_and_first_voxels(
    monkeypatch, connectivity
):
    from scipy import ndimage as ndi

    from unet_plugins.postprocessors.block_labels import (
        global_raster_index,
        label_block,
        label_stats,
    )

    pytest.importorskip("cc3d")
    rng = np.random.default_rng(connectivity)
    mask = ndi.gaussian_filter(rng.standard_normal((12, 20, 18)), 1.0) > 0.3
    index, shape = (slice(4, 16), slice(20, 40), slice(0, 18)), (30, 60, 18)
    fast, n = label_block(mask, connectivity)
    monkeypatch.setitem(__import__("sys").modules, "cc3d", None)  # import cc3d now fails
    slow, m = label_block(mask, connectivity)
    assert n == m > 5
    np.testing.assert_array_equal(fast, slow)
    raster = global_raster_index(index, shape)
    expected = ndi.minimum(raster, slow, np.arange(1, n + 1))
    sizes, firsts = label_stats(slow, n, index, shape)
    np.testing.assert_array_equal(firsts, expected)
    np.testing.assert_array_equal(sizes, np.bincount(slow.ravel())[1:])
    shuffled = np.concatenate([[0], rng.permutation(n) + 1])[slow]  # not in raster order
    _, firsts = label_stats(shuffled, n, index, shape)
    np.testing.assert_array_equal(firsts, ndi.minimum(raster, shuffled, np.arange(1, n + 1)))
