"""Patch grid, importance maps and accumulators (in memory and streaming) on known answers."""

from __future__ import annotations

import numpy as np
import pytest

from unet_core.prediction.blending import (
    BlockAccumulator,
    VolumeAccumulator,
    axis_starts,
    gaussian_importance,
    patch_grid,
    redundancy,
    stride_for_overlap,
)


def test_axis_starts_follow_the_reference_rule():
    assert axis_starts(100, 64, 32) == [0, 32, 36]  # last patch flush with the end
    assert axis_starts(128, 64, 64) == [0, 64]
    assert axis_starts(64, 64, 16) == [0]
    assert len(patch_grid((100, 100, 100), (64, 64, 64), (32, 32, 32))) == 27
    with pytest.raises(ValueError):
        axis_starts(10, 11, 1)


def test_stride_for_overlap_and_redundancy():
    assert stride_for_overlap((64, 64, 64), 0.25) == (48, 48, 48)
    grid = patch_grid((100, 100, 100), (64, 64, 64), (48, 48, 48))
    assert len(grid) == 8
    assert redundancy(grid, (100, 100, 100), (0, 0, 0)) == pytest.approx(8 * 64**3 / 1e6)


def test_gaussian_importance_is_centred_clipped_and_flat_on_singleton_axes():
    w = gaussian_importance((1, 32, 33))
    assert w.dtype == np.float32 and w.shape == (1, 32, 33)
    assert w.max() == pytest.approx(1.0) and w.min() > 0
    assert np.allclose(w, w[:, ::-1, ::-1])  # symmetric
    assert w[0, 15, 16] == pytest.approx(w.max(), rel=1e-2)
    # sigma = n/8 = 10 for n = 80; the centre is at 39.5, so 9.5 + 0.5 ... = 10 voxels off
    w1 = gaussian_importance((1, 1, 80))[0, 0]
    assert w1[49] / w1[39] == pytest.approx(np.exp(-0.5 * (9.5 / 10) ** 2 + 0.5 * (0.5 / 10) ** 2))
    assert gaussian_importance((64, 64, 64)).min() == pytest.approx(1e-4)  # clipped corner


def _grid_patches(shape, patch, stride, fn):
    for index in patch_grid(shape, patch, stride):
        yield fn(index), index


def test_gaussian_blending_of_a_constant_is_that_constant():
    shape = (20, 37, 41)
    acc = VolumeAccumulator(2, shape, "gaussian")
    for _, index in _grid_patches(shape, (8, 16, 16), (5, 11, 9), lambda i: None):
        ext = tuple(s.stop - s.start for s in index)
        acc.add(np.stack([np.full(ext, 0.3), np.full(ext, 7.0)]).astype(np.float32), index)
    out = acc.result()
    assert np.allclose(out[0], 0.3, atol=1e-6) and np.allclose(out[1], 7.0, atol=1e-5)


def test_gaussian_blending_averages_by_weight():
    acc = VolumeAccumulator(1, (1, 1, 12), "gaussian")
    a, b = (slice(0, 1), slice(0, 1), slice(0, 8)), (slice(0, 1), slice(0, 1), slice(4, 12))
    acc.add(np.zeros((1, 1, 1, 8), np.float32), a)
    acc.add(np.ones((1, 1, 1, 8), np.float32), b)
    w = gaussian_importance((1, 1, 8))[0, 0]
    out = acc.result()[0, 0, 0]
    assert np.allclose(out[:4], 0) and np.allclose(out[8:], 1)
    expected = w[:4] / (w[4:] + w[:4])  # overlap: voxel 4+k has weight w[4+k] from a, w[k] from b
    assert np.allclose(out[4:8], expected, atol=1e-6)


def test_overwrite_mode_keeps_the_last_patch():
    acc = VolumeAccumulator(1, (4, 4, 10), "overwrite")
    grid = patch_grid((4, 4, 10), (4, 4, 6), (4, 4, 3))  # x starts 0, 3, 4
    for k, index in enumerate(grid):
        acc.add(np.full((1, 4, 4, 6), k + 1, np.float32), index)
    x = acc.result()[0, 0, 0]
    assert x.tolist() == [1, 1, 1, 2, 3, 3, 3, 3, 3, 3]


def _random_patches(shape, patch, stride, channels, seed):
    rng = np.random.default_rng(seed)
    grid = patch_grid(shape, patch, stride)
    preds = [rng.random((channels, *patch), dtype=np.float32) for _ in grid]
    return grid, preds


@pytest.mark.parametrize("mode", ["overwrite", "gaussian"])
@pytest.mark.parametrize("max_open", [None, 1, 3])
def test_block_accumulator_equals_in_memory(mode, max_open, tmp_path):
    shape, patch, stride = (23, 30, 26), (8, 12, 10), (5, 7, 8)
    grid, preds = _random_patches(shape, patch, stride, 2, seed=1)
    ref = VolumeAccumulator(2, shape, mode)
    for p, i in zip(preds, grid):
        ref.add(p, i)
    expected = ref.result()
    out = np.full((2, *shape), -1.0, np.float32)
    flushed = []

    def sink(index, values):
        flushed.append(tuple((s.start, s.stop) for s in index))
        out[(slice(None), *index)] = values

    acc = BlockAccumulator(
        grid, 2, shape, (7, 9, 11), mode, sink, max_open_blocks=max_open, scratch_dir=str(tmp_path)
    )
    for p, i in zip(preds, grid):
        acc.add(p, i)
    acc.close()
    assert len(flushed) == len(set(flushed)) == 4 * 4 * 3  # every block exactly once
    assert np.allclose(out, expected, atol=1e-6)
    if max_open is not None:
        assert acc.peak_open_blocks <= max_open + 1
    if max_open == 1:
        assert acc.spills > 0  # the budget forced blocks to the scratch file
    assert not list(tmp_path.iterdir())  # scratch removed


def test_block_accumulator_reports_missing_patches():
    shape = (4, 4, 8)
    grid = patch_grid(shape, (4, 4, 4), (4, 4, 4))
    acc = BlockAccumulator(grid, 1, shape, (4, 4, 4), "overwrite", lambda i, v: None)
    acc.add(np.zeros((1, 4, 4, 4), np.float32), grid[0])
    with pytest.raises(RuntimeError, match="never received"):
        acc.close()
