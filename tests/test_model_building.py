"""Building the model of a prediction: every tensor comes from the checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from predict_support import config as predict_config
from predict_support import save_weights, tiny_unet, write_volume

from unet_core.config import config_from_dict
from unet_core.prediction.building import build_model


def _cfg(tmp_path: Path):
    model, spec = tiny_unet()
    with torch.no_grad():  # weights no initialisation would produce
        for i, p in enumerate(model.parameters()):
            p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape) * (i + 1))
    raw = np.random.default_rng(0).random((8, 16, 16)).astype(np.float32)
    path = write_volume(tmp_path / "in.h5", raw)
    ckpt = save_weights(model, tmp_path / "w.pytorch")
    cfg = predict_config(
        spec, ckpt, [path], tmp_path / "out", patch=(8, 16, 16), stride=(8, 16, 16), halo=(0,) * 3
    )
    return config_from_dict(cfg), model


def test_built_model_holds_exactly_the_checkpoint(tmp_path: Path) -> None:
    cfg, saved = _cfg(tmp_path)
    model = build_model(cfg)
    expected = saved.state_dict()
    state = model.state_dict()
    assert state.keys() == expected.keys()
    for key, value in state.items():
        assert value.device.type == "cpu" and not value.is_meta, key
        assert torch.equal(value, expected[key]), key
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.inference_mode():
        assert torch.equal(model.eval()(x), saved.eval()(x))
