"""Reference semantics: mirror-padded halo, per-patch transforms, halo cropped, overlapping
stride regions overwritten in patch order; the streaming path writes the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from predict_support import PatchMean, Register, config, read, save_weights, tiny_unet, write_volume

from unet_core.prediction.run import predict, run_prediction


def starts(size: int, patch: int, stride: int) -> list[int]:
    out = list(range(0, size - patch + 1, stride))
    return out + ([size - patch] if out[-1] + patch < size else [])


def reference_prediction(model, raw, patch, stride, halo, standardize=True):
    """The reference's StandardPredictor written out plainly (numpy + the model)."""
    padded = np.pad(raw, [(h, h) for h in halo], mode="reflect")
    out = None
    model.eval()
    grids = [starts(n, p, s) for n, p, s in zip(raw.shape, patch, stride)]
    for z in grids[0]:
        for y in grids[1]:
            for x in grids[2]:
                window = padded[
                    z : z + patch[0] + 2 * halo[0],
                    y : y + patch[1] + 2 * halo[1],
                    x : x + patch[2] + 2 * halo[2],
                ].astype(np.float32)
                if standardize:
                    window = (window - window.mean()) / max(window.std(), 1e-10)
                with torch.no_grad():
                    pred = model(torch.from_numpy(window)[None, None])[0].numpy()
                pred = pred[
                    :,
                    halo[0] : pred.shape[1] - halo[0],
                    halo[1] : pred.shape[2] - halo[1],
                    halo[2] : pred.shape[3] - halo[2],
                ]
                if out is None:
                    out = np.zeros((pred.shape[0], *raw.shape), np.float32)
                out[:, z : z + patch[0], y : y + patch[1], x : x + patch[2]] = pred
    return out


@pytest.fixture
def volume(tmp_path):
    rng = np.random.default_rng(3)
    raw = rng.normal(100, 20, size=(19, 34, 37)).astype(np.float32)
    return write_volume(tmp_path / "vol.h5", raw), raw


def test_unet3d_output_equals_the_reference_algorithm(tmp_path, volume):
    path, raw = volume
    model, spec = tiny_unet(seed=1)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    cfg = config(spec, ckpt, [path], tmp_path / "out")
    (out,) = predict(cfg)
    assert out == str(tmp_path / "out" / "vol_predictions.h5")
    got = read(out)
    expected = reference_prediction(model, raw, (8, 16, 16), (5, 12, 12), (2, 4, 4))
    assert got.shape == (2, 19, 34, 37) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5)


def test_overwrite_order_and_halo_with_a_patch_mean_model(tmp_path):
    raw = np.arange(12 * 20 * 22, dtype=np.float32).reshape(12, 20, 22)
    path = write_volume(tmp_path / "ramp.h5", raw)
    with Register(PatchMeanTest=PatchMean):
        model = PatchMean()
        ckpt = save_weights(model, tmp_path / "m.pytorch")
        spec = {"name": "PatchMeanTest"}
        cfg = config(
            spec,
            ckpt,
            [path],
            tmp_path,
            patch=(6, 8, 8),
            stride=(4, 5, 6),
            halo=(1, 2, 3),
            raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
        )
        (out,) = predict(cfg)
    expected = reference_prediction(model, raw, (6, 8, 8), (4, 5, 6), (1, 2, 3), False)
    got = read(out)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # the last patch along x starts at 14 and owns voxels 14..21; the one before (12) only 12..13
    assert len(np.unique(got[0, 0, 0])) == 4  # x patches at 0, 6, 12, 14 each own a piece


@pytest.mark.parametrize("blending", ["overwrite", "gaussian"])
def test_lazy_predictor_streams_the_same_numbers(tmp_path, volume, blending):
    path, _ = volume
    model, spec = tiny_unet(seed=2)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    standard = config(
        spec,
        ckpt,
        [path],
        tmp_path / "a",
        predictor={"name": "StandardPredictor", "blending": blending},
    )
    lazy = config(
        spec,
        ckpt,
        [path],
        tmp_path / "b",
        dataset="LazyHDF5Dataset",
        predictor={
            "name": "LazyPredictor",
            "blending": blending,
            "chunks": [4, 8, 8],
            "block_shape": [8, 16, 16],
            "max_block_memory_mb": 0.01,
            "compression": "lzf",
        },
    )
    (a,) = predict(standard)
    (written,) = run_prediction(lazy)
    np.testing.assert_allclose(read(written.path), read(a), atol=1e-6)
    assert written.stats["spilled_blocks"] > 0  # the tiny budget really streamed via scratch


def test_batched_equals_unbatched(tmp_path, volume):
    path, _ = volume
    model, spec = tiny_unet(seed=4)
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    outs = []
    for batch in (1, 3):
        cfg = config(
            spec,
            ckpt,
            [path],
            tmp_path / f"b{batch}",
            predictor={"name": "StandardPredictor", "batch_size": batch, "blending": "gaussian"},
        )
        outs.append(read(predict(cfg)[0]))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
