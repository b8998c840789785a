"""Opt-in predictor keys: TTA, fast mode, output dtype/compression/chunks, amp, metrics."""

from __future__ import annotations

from contextlib import nullcontext

import h5py
import numpy as np
import pytest
from predict_support import (
    Blur,
    Pointwise,
    Register,
    ShiftX,
    config,
    read,
    save_weights,
    tiny_unet,
    write_volume,
)

from unet_core import registry
from unet_core.prediction.inference import tta_transforms
from unet_core.prediction.run import predict, run_prediction

NO_NORM = [{"name": "ToTensor", "expand_dims": True}]


def _native_bf16() -> bool:
    from unet_core.engine.precision import cpu_flags, detect_native_bf16

    return detect_native_bf16("cpu", cpu_flags=cpu_flags()) is not None


def _run(tmp_path, name, cls, raw, predictor, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_volume(tmp_path / f"{name}.h5", raw)
    with Register(**{name: cls}):
        ckpt = save_weights(cls(), tmp_path / f"{name}.pytorch")
        cfg = config(
            {"name": name},
            ckpt,
            [path],
            tmp_path / "out",
            raw_transforms=NO_NORM,
            predictor=predictor,
            **kw,
        )
        (written,) = run_prediction(cfg)
    return written


def test_tta_groups():
    assert len(tta_transforms("flips", 3)) == 8 and len(tta_transforms("flips", 2)) == 4
    assert len(tta_transforms("flips_rot90", 3)) == 16
    assert len(tta_transforms("flips_rot90", 2)) == 8
    assert len({str(t) for t in tta_transforms("flips_rot90", 3)}) == 16


@pytest.mark.parametrize("tta", ["flips", "flips_rot90"])
def test_tta_of_a_flip_equivariant_model_changes_nothing(tmp_path, tta):
    raw = np.random.default_rng(0).random((10, 16, 16)).astype(np.float32)
    plain = _run(
        tmp_path / "a",
        "BlurTest",
        Blur,
        raw,
        {"name": "StandardPredictor"},
        patch=(10, 16, 16),
        stride=(10, 16, 16),
        halo=(0, 0, 0),
    )
    tta_out = _run(
        tmp_path / "b",
        "BlurTest",
        Blur,
        raw,
        {"name": "StandardPredictor", "tta": tta},
        patch=(10, 16, 16),
        stride=(10, 16, 16),
        halo=(0, 0, 0),
    )
    np.testing.assert_allclose(read(tta_out.path), read(plain.path), atol=1e-6)


def test_tta_flips_average_a_shift_both_ways(tmp_path):
    raw = np.random.default_rng(1).random((4, 8, 12)).astype(np.float32)
    out = _run(
        tmp_path,
        "ShiftTest",
        ShiftX,
        raw,
        {"name": "StandardPredictor", "tta": "flips"},
        patch=(4, 8, 12),
        stride=(4, 8, 12),
        halo=(0, 0, 0),
    )
    got = read(out.path)[0]
    # half of the 8 flips flip x: they see x[i+1]; the others x[i-1]
    np.testing.assert_allclose(got[..., 1:-1], (raw[..., :-2] + raw[..., 2:]) / 2, atol=1e-6)
    np.testing.assert_allclose(got[..., 0], raw[..., 1] / 2, atol=1e-6)


def test_fast_mode_tiles_blends_and_matches_a_pointwise_model(tmp_path):
    raw = np.random.default_rng(2).normal(size=(30, 70, 90)).astype(np.float32)
    written = _run(
        tmp_path, "PointTest", Pointwise, raw, {"name": "StandardPredictor", "fast": True}
    )
    got = read(written.path)
    np.testing.assert_allclose(got[0], 1 / (1 + np.exp(-raw)), atol=1e-6)
    # tiles of the measured size fitted to the volume (the plan's edge is the device's)
    tile = written.stats["tile"]
    assert all(t <= n for t, n in zip(tile, raw.shape)) and written.stats["patches"] >= 1
    assert written.stats["redundancy"] == pytest.approx(
        written.stats["patches"] * np.prod(tile) / raw.size
    )


def test_explicit_tile_keys_override_the_slice_builder(tmp_path):
    raw = np.random.default_rng(3).normal(size=(12, 40, 40)).astype(np.float32)
    written = _run(
        tmp_path,
        "PointTest",
        Pointwise,
        raw,
        {
            "name": "StandardPredictor",
            "tile_shape": [12, 24, 24],
            "tile_overlap": 0.5,
            "blending": "gaussian",
        },
    )
    assert written.stats["patches"] == 9  # starts 0, 12, 16 per Y/X axis
    np.testing.assert_allclose(read(written.path)[0], 1 / (1 + np.exp(-raw)), atol=1e-6)


def test_output_dtype_compression_and_chunks(tmp_path):
    raw = np.random.default_rng(4).normal(size=(8, 16, 16)).astype(np.float32)
    written = _run(
        tmp_path,
        "PointTest",
        Pointwise,
        raw,
        {
            "name": "StandardPredictor",
            "output_dtype": "uint8",
            "compression": "lzf",
            "chunks": [4, 8, 8],
        },
        patch=(8, 16, 16),
        stride=(8, 16, 16),
        halo=(0, 0, 0),
    )
    with h5py.File(written.path) as f:
        ds = f["predictions"]
        assert ds.dtype == np.uint8 and ds.compression == "lzf" and ds.chunks == (1, 4, 8, 8)
        assert ds.attrs["quantization"] == "probability = value / 255"
        np.testing.assert_array_equal(ds[0], np.rint(255 / (1 + np.exp(-raw))).astype(np.uint8))


def test_float16_gzip_level_and_prediction_channel(tmp_path):
    raw = np.random.default_rng(5).normal(size=(8, 16, 16)).astype(np.float32)
    model, spec = tiny_unet(seed=5, out_channels=3)
    path = write_volume(tmp_path / "v.h5", raw)
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    full = read(predict(config(spec, ckpt, [path], tmp_path / "a"))[0])
    cfg = config(
        spec,
        ckpt,
        [path],
        tmp_path / "b",
        predictor={
            "name": "StandardPredictor",
            "output_dtype": "float16",
            "compression": 9,
            "prediction_channel": 2,
        },
    )
    with h5py.File(predict(cfg)[0]) as f:
        ds = f["predictions"]
        assert ds.dtype == np.float16 and ds.shape == (1, 8, 16, 16)
        assert ds.compression == "gzip" and ds.compression_opts == 9
        np.testing.assert_allclose(ds[0], full[2], atol=1e-3)


def _predict_with(spec, ckpt, path, out, **predictor):
    cfg = config(spec, ckpt, [path], out, predictor={"name": "StandardPredictor", **predictor})
    return read(predict(cfg)[0])


def test_bf16_autocast_and_channels_last_stay_close(tmp_path):
    raw = np.random.default_rng(6).normal(size=(8, 16, 16)).astype(np.float32)
    model, spec = tiny_unet(seed=6)
    path = write_volume(tmp_path / "v.h5", raw)
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    base = _predict_with(spec, ckpt, path, tmp_path / "a", channels_last=False, batch_size=1)
    last = _predict_with(spec, ckpt, path, tmp_path / "b", channels_last=True, batch_size=3)
    slow_bf16 = not _native_bf16()
    with pytest.warns(UserWarning, match="bf16") if slow_bf16 else nullcontext():
        bf16 = _predict_with(spec, ckpt, path, tmp_path / "c", amp="bf16")
    np.testing.assert_allclose(last, base, atol=1e-5)
    assert np.abs(bf16 - base).max() < 0.05


def test_save_segmentation_and_performance_metric(tmp_path):
    raw = np.random.default_rng(7).normal(size=(8, 16, 16)).astype(np.float32)
    model, spec = tiny_unet(seed=7)
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    probs_cfg = config(spec, ckpt, [write_volume(tmp_path / "v.h5", raw)], tmp_path / "p")
    probs = read(predict(probs_cfg)[0])
    labels = np.argmax(probs, axis=0).astype(np.uint16)
    gt = labels.copy()
    gt[:4] = 1 - gt[:4]  # half the volume wrong
    path = write_volume(tmp_path / "w.h5", raw, label=gt)
    cfg = config(
        spec,
        ckpt,
        [path],
        tmp_path / "s",
        predictor={
            "name": "StandardPredictor",
            "save_segmentation": True,
            "performance_metric": "dice",
            "gt_internal_path": "label",
        },
    )
    (written,) = run_prediction(cfg)
    seg = read(written.path)
    assert seg.dtype == np.uint16 and seg.shape == (8, 16, 16)
    np.testing.assert_array_equal(seg, labels)
    a, b = labels == 1, gt == 1
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    assert written.metrics["per_class"] == [pytest.approx(dice)]
    # mean_iou of a perfect segmentation, with an empty class: 1, not NaN
    empty = np.zeros_like(gt)
    path = write_volume(tmp_path / "e.h5", raw, label=empty)
    cfg["loaders"]["test"]["file_paths"] = [str(path)]
    cfg["predictor"] = {
        "name": "StandardPredictor",
        "performance_metric": "mean_iou",
        "gt_internal_path": "label",
    }
    (written,) = run_prediction(cfg)
    assert written.metrics["per_class"] == [pytest.approx((labels == 0).all() * 1.0)]
    assert not np.isnan(written.metrics["mean"])


def test_predictor_keys_are_validated():
    from unet_core.errors import ConfigError

    with pytest.raises(ConfigError, match="gt_internal_path"):
        registry.validate("predictors", {"name": "StandardPredictor", "performance_metric": "dice"})
    with pytest.raises(ConfigError, match="blending"):
        registry.validate("predictors", {"name": "StandardPredictor", "blending": "mean"})
    # the reference's old key did nothing: rejected with the key that does it
    with pytest.raises(ConfigError, match="loaders.test.slice_builder.halo_shape"):
        registry.validate("predictors", {"name": "StandardPredictor", "patch_halo": [4, 8, 8]})
