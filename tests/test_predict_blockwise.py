"""Connected components block by block (out-of-core segmentation): the labels must equal those
of labelling the whole volume at once, numbering included, for any block shape."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from predict_support import Pointwise, Register, config, save_weights, write_volume
from scipy import ndimage as ndi
from skimage.measure import label

from unet_core import registry
from unet_core.prediction.run import run_prediction
from unet_plugins.postprocessors.blockwise import block_indices, connected_components_blockwise
from unet_plugins.postprocessors.instances import ConnectedComponents, remove_small


def run_blockwise(volume: np.ndarray, block, connectivity: int, min_size: int):
    out = np.full(volume.shape, -1, np.int64)
    counts = []

    def open_output(n):
        counts.append(n)
        return out.__setitem__

    n = connected_components_blockwise(
        lambda index: volume[index],
        volume.shape,
        block,
        open_output,
        connectivity=connectivity,
        min_size=min_size,
    )
    assert counts == [n]
    return out, n


def test_blocks_tile_the_volume_once():
    shape, block = (5, 7, 9), (2, 3, 4)
    seen = np.zeros(shape, np.int64)
    for index in block_indices(shape, block):
        seen[index] += 1
    assert (seen == 1).all() and len(list(block_indices(shape, block))) == 3 * 3 * 3


@pytest.mark.parametrize("seed", range(12))
def test_equals_labelling_the_whole_volume(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(x) for x in rng.integers(6, 28, 3))
    block = tuple(int(x) for x in rng.integers(2, 10, 3))
    connectivity, min_size = seed % 3 + 1, int(rng.integers(0, 5))
    smooth = ndi.gaussian_filter(rng.random(shape), 1.0) > 0.5  # objects span blocks
    volume = smooth if seed % 2 else rng.random(shape) > 0.65  # many diagonal contacts
    expected = remove_small(label(volume, connectivity=connectivity), min_size)
    out, n = run_blockwise(volume, block, connectivity, min_size)
    np.testing.assert_array_equal(out, expected)
    assert n == expected.max()


def test_a_spiral_through_many_blocks_is_one_object():
    volume = np.zeros((4, 20, 20), bool)
    volume[1, 2, 2:18] = volume[1, 2:18, 17] = volume[1, 17, 2:18] = volume[1, 5:18, 2] = True
    volume[1, 5, 2:14] = volume[1, 5:14, 13] = True
    out, n = run_blockwise(volume, (2, 3, 3), 1, 0)
    assert n == 1 and set(np.unique(out)) == {0, 1}
    diagonal = np.zeros((3, 9, 9), bool)
    for i in range(9):
        diagonal[1, i, i] = True  # touches only across block corners (edges in-plane)
    assert run_blockwise(diagonal, (3, 2, 2), 1, 0)[1] == 9
    assert run_blockwise(diagonal, (3, 2, 2), 2, 0)[1] == 1


def test_postprocessor_segment_blocks_matches_its_in_memory_call():
    rng = np.random.default_rng(7)
    shape = (12, 30, 30)
    fg = ndi.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)
    boundary = (rng.random(shape) > 0.9).astype(np.float32) * 0.2
    prediction = np.stack([fg, boundary])
    spec = {"name": "ConnectedComponents", "threshold": float(np.median(fg)), "min_size": 4}
    for extra in ({}, {"boundary_channel": 1}):
        cc = registry.create("postprocessors", {**spec, **extra})
        out = np.zeros(shape, np.int64)
        n = cc.segment_blocks(
            lambda index: prediction[(slice(None), *index)],
            shape,
            (5, 8, 8),
            lambda n, out=out: out.__setitem__,
        )
        expected = cc(prediction)
        np.testing.assert_array_equal(out, expected)
        assert n == expected.max() > 3


def _whole_volume_forbidden(self, prediction):
    raise AssertionError("LazyPredictor loaded the whole prediction")


def test_lazy_predictor_segments_block_by_block(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    raw = ndi.gaussian_filter(rng.standard_normal((20, 48, 48)), 2.0).astype(np.float32)
    raw /= raw.std()
    volume = write_volume(tmp_path / "vol.h5", raw)
    with Register(PointwiseCC=Pointwise):
        ckpt = save_weights(Pointwise(), tmp_path / "m.pytorch")
        post = {"name": "ConnectedComponents", "threshold": 0.7, "min_size": 5}
        results = {}
        for name, predictor in {
            "lazy": {"name": "LazyPredictor", "block_shape": [8, 16, 16], "chunks": [4, 8, 8]},
            "standard": {"name": "StandardPredictor"},
        }.items():
            cfg = config(
                {"name": "PointwiseCC"},
                ckpt,
                [volume],
                tmp_path / name,
                patch=(8, 16, 16),
                stride=(8, 16, 16),
                halo=(0, 0, 0),
                raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
                predictor=predictor,
                postprocessor=post,
            )
            with monkeypatch.context() as m:
                if name == "lazy":  # never the whole volume in memory
                    m.setattr(ConnectedComponents, "__call__", _whole_volume_forbidden)
                (written,) = run_prediction(cfg)
            assert written.datasets == ["predictions", "segmentation"]
            with h5py.File(written.path) as f:
                results[name] = f["segmentation"][...]
    expected = remove_small(label(1 / (1 + np.exp(-raw)) > 0.7, connectivity=1), 5)
    assert expected.max() > 5  # objects that cross the 8x16x16 blocks
    np.testing.assert_array_equal(results["lazy"], expected)
    np.testing.assert_array_equal(results["standard"], expected)
    assert results["lazy"].dtype == np.uint16
    assert not list(tmp_path.glob("lazy/.labels.*"))  # the scratch file is gone
