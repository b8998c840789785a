"""Bad input gets one paragraph naming the key/file and the fix; no half-written outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from predict_support import PatchMean, Register, config, read, save_weights, tiny_unet, write_volume

from unet_core.errors import CheckpointError, ConfigError, DataError
from unet_core.prediction.run import predict


def one_paragraph(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.fixture
def setup(tmp_path):
    raw = np.random.default_rng(0).random((12, 20, 20)).astype(np.float32)
    path = write_volume(tmp_path / "vol.h5", raw)
    model, spec = tiny_unet()
    ckpt = save_weights(model, tmp_path / "best.pytorch")
    return path, spec, ckpt


def test_missing_model_path(setup, tmp_path):
    path, spec, ckpt = setup
    cfg = config(spec, ckpt, [path], tmp_path / "out")
    del cfg["model_path"]
    with pytest.raises(ConfigError) as exc:
        predict(cfg)
    assert "model_path" in one_paragraph(exc) and "--set model_path=" in str(exc.value)


def test_checkpoint_that_does_not_fit_the_model(setup, tmp_path):
    path, spec, _ = setup
    other, _ = tiny_unet(f_maps=8)
    ckpt = save_weights(other, tmp_path / "other.pytorch")
    with pytest.raises(CheckpointError) as exc:
        predict(config(spec, ckpt, [path], tmp_path / "out"))
    text = one_paragraph(exc)
    assert "f_maps" in text and "other.pytorch" in text


def test_input_without_raw(setup, tmp_path):
    _, spec, ckpt = setup
    path = tmp_path / "noraw.h5"
    import h5py

    with h5py.File(path, "w") as f:
        f["volume"] = np.zeros((12, 20, 20), np.float32)
    with pytest.raises(DataError) as exc:
        predict(config(spec, ckpt, [path], tmp_path / "out"))
    text = one_paragraph(exc)
    assert "'raw'" in text and "'volume'" in text and "raw_internal_path" in text


def test_existing_output_is_refused_unless_overwrite(setup, tmp_path):
    path, spec, ckpt = setup
    out = tmp_path / "out"
    out.mkdir()
    target = out / "vol_predictions.h5"
    target.write_bytes(b"earlier result")
    cfg = config(spec, ckpt, [path], out)
    with pytest.raises(DataError) as exc:
        predict(cfg)
    assert "--overwrite" in one_paragraph(exc) and str(target) in str(exc.value)
    assert target.read_bytes() == b"earlier result"
    (written,) = predict(cfg, overwrite=True)
    assert read(written).shape == (2, 12, 20, 20)
    cfg["predictor"] = {"name": "StandardPredictor", "overwrite": True}
    predict(cfg)  # the predictor key does the same


class Exploding(PatchMean):
    calls = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        Exploding.calls += 1
        if Exploding.calls == 3:
            raise RuntimeError("simulated crash in the middle of a volume")
        return super().logits(x)


@pytest.mark.parametrize("predictor", ["StandardPredictor", "LazyPredictor"])
def test_a_crash_leaves_no_partial_output(setup, tmp_path, predictor):
    path, _, _ = setup
    Exploding.calls = 0
    out = tmp_path / "out"
    with Register(ExplodingTest=Exploding):
        ckpt = save_weights(Exploding(), tmp_path / "e.pytorch")
        cfg = config({"name": "ExplodingTest"}, ckpt, [path], out, predictor={"name": predictor})
        with pytest.raises(RuntimeError, match="simulated"):
            predict(cfg)
    assert not out.exists() or not list(out.iterdir())


def test_patch_larger_than_the_volume(setup, tmp_path):
    path, spec, ckpt = setup
    with pytest.raises(DataError) as exc:
        predict(config(spec, ckpt, [path], tmp_path / "out", patch=(16, 16, 16)))
    text = one_paragraph(exc)
    assert "patch_shape" in text and "vol.h5" in text


def test_halo_too_big(setup, tmp_path):
    path, spec, ckpt = setup
    with pytest.raises(DataError) as exc:
        predict(config(spec, ckpt, [path], tmp_path / "out", halo=(12, 4, 4)))
    text = one_paragraph(exc)
    assert "halo_shape" in text and "(12, 20, 20)" in text and "Reduce halo_shape" in text


def test_bad_predictor_options(setup, tmp_path):
    path, spec, ckpt = setup
    cfg = config(
        spec,
        ckpt,
        [path],
        tmp_path / "out",
        predictor={"name": "StandardPredictor", "prediction_channel": 5},
    )
    with pytest.raises(ConfigError) as exc:
        predict(cfg)
    assert "prediction_channel" in one_paragraph(exc)
    cfg["predictor"] = {"name": "StandardPredictor", "amp": "fp16"}
    with pytest.raises(ConfigError) as exc:
        predict(cfg)
    assert "bf16" in one_paragraph(exc)
    cfg["predictor"] = {"name": "StandardPredictor", "tile_sahpe": [8, 8, 8]}
    with pytest.raises(ConfigError) as exc:
        predict(cfg)
    assert "tile_sahpe" in str(exc.value)
