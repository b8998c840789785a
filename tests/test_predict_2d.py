"""2D data (stored as Z=1) from a real TIFF: 2D models get (N,C,Y,X), halo cropped in Y/X,
TIFF output, fast tiles for 2D, and the prediction hook."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from predict_support import config, read, save_weights

from unet_core import registry
from unet_core.hooks import hookimpl, plugin_manager
from unet_core.prediction.run import run_prediction

PATCH, STRIDE, HALO = (1, 128, 128), (1, 96, 96), (0, 16, 16)


def starts(size, patch, stride):
    out = list(range(0, size - patch + 1, stride))
    return out + ([size - patch] if out[-1] + patch < size else [])


def expected_2d(model, raw):
    """The reference's loop for 2D: mirror-pad Y/X, per-patch Standardize, overwrite."""
    padded = np.pad(raw, [(h, h) for h in HALO[1:]], mode="reflect")
    out = np.zeros((model.out_channels, 1, *raw.shape), np.float32)
    model.eval()
    for y in starts(raw.shape[0], PATCH[1], STRIDE[1]):
        for x in starts(raw.shape[1], PATCH[2], STRIDE[2]):
            w = padded[y : y + PATCH[1] + 32, x : x + PATCH[2] + 32].astype(np.float32)
            w = (w - w.mean()) / max(w.std(), 1e-10)
            with torch.no_grad():
                p = model(torch.from_numpy(w)[None, None])[0].numpy()
            out[:, 0, y : y + PATCH[1], x : x + PATCH[2]] = p[:, 16:-16, 16:-16]
    return out


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "UNet2D", "f_maps": [4, 8], "num_groups": 2},
        {"name": "ResidualUNet2D", "f_maps": [4, 8], "num_groups": 2},  # the reference cannot
    ],
)
def test_2d_models_on_a_real_tiff(sample_data, tmp_path, spec):
    spec = {**spec, "in_channels": 1, "out_channels": 1}
    torch.manual_seed(0)
    model = registry.create("models", spec)
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    image = sample_data / "nuclei2d_raw.tif"
    cfg = config(spec, ckpt, [image], tmp_path / "out", patch=PATCH, stride=STRIDE, halo=HALO)
    (written,) = run_prediction(cfg)
    got = read(written.path)
    assert got.shape == (1, 1, 512, 512)
    raw = tifffile.imread(image)
    np.testing.assert_allclose(got, expected_2d(model, raw), atol=2e-5)


class Recorder:
    def __init__(self):
        self.calls = []

    @hookimpl
    def unet_prediction_written(self, path, datasets):
        self.calls.append((path, datasets))


def test_tiff_output_fast_2d_tiles_and_the_hook(sample_data, tmp_path):
    spec = {
        "name": "UNet2D",
        "in_channels": 1,
        "out_channels": 1,
        "f_maps": [4, 8],
        "num_groups": 2,
    }
    torch.manual_seed(1)
    ckpt = save_weights(registry.create("models", spec), tmp_path / "m.pytorch")
    image = sample_data / "nuclei2d_raw.tif"
    recorder = Recorder()
    plugin_manager().register(recorder)
    try:
        cfg = config(
            spec,
            ckpt,
            [image],
            tmp_path / "out",
            patch=PATCH,
            stride=STRIDE,
            halo=HALO,
            predictor={"name": "StandardPredictor", "fast": True, "output_format": "tiff"},
            postprocessor={"name": "ConnectedComponents"},
        )
        (written,) = run_prediction(cfg)
    finally:
        plugin_manager().unregister(recorder)
    assert written.path.endswith("nuclei2d_raw_predictions.tif")
    pred = tifffile.imread(written.path)
    seg = tifffile.imread(tmp_path / "out" / "nuclei2d_raw_predictions_segmentation.tif")
    assert pred.shape == (1, 1, 512, 512) and seg.shape == (1, 512, 512)
    # fast on 2D: flat tiles of at most 256 overlapping by >= 64: 3 x 3 tiles of 214
    assert written.stats["patches"] == 9
    assert recorder.calls == [(written.path, ["predictions", "segmentation"])]
