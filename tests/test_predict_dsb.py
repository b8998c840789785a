"""DSB2018Predictor on a tiny DSB-style folder: one file per image, predictions + labels."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tifffile
import torch
from skimage.measure import label

from unet_core import registry
from unet_core.errors import DataError
from unet_core.prediction.run import run_prediction

SPEC = {"name": "UNet2D", "in_channels": 1, "out_channels": 1, "f_maps": [4, 8], "num_groups": 2}


@pytest.fixture
def dsb(tmp_path):
    images = tmp_path / "dsb" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    tifffile.imwrite(images / "a.tif", (rng.random((40, 48)) * 255).astype(np.uint8))
    tifffile.imwrite(images / "b.tif", (rng.random((32, 36)) * 60000).astype(np.uint16))
    torch.manual_seed(0)
    model = registry.create("models", SPEC)
    ckpt = tmp_path / "m.pytorch"
    torch.save({"model_state_dict": model.state_dict()}, ckpt)
    cfg = {
        "model_path": str(ckpt),
        "model": SPEC,
        "device": "cpu",
        "predictor": {"name": "DSB2018Predictor", "pmaps_thershold": 0.45},
        "loaders": {
            "dataset": "DSB2018Dataset",
            "batch_size": 1,
            "num_workers": 0,
            "test": {
                "file_paths": [str(tmp_path / "dsb")],
                "transformer": {
                    "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]
                },
            },
        },
    }
    return cfg, model, images


def test_one_output_per_image_next_to_it(dsb):
    cfg, model, images = dsb
    written = run_prediction(cfg)
    assert [w.path for w in written] == [
        str(images / "a_predictions.h5"),
        str(images / "b_predictions.h5"),
    ]
    model.eval()
    for w, shape in zip(written, [(40, 48), (32, 36)]):
        with h5py.File(w.path) as f:
            pred, seg = f["predictions"][...], f["segmentation"][...]
        assert pred.shape == shape and pred.dtype == np.float32
        assert seg.dtype == np.uint16
        np.testing.assert_array_equal(seg, label(pred > 0.45))  # the misspelled key is used
        raw = tifffile.imread(w.source).astype(np.float32)
        x = torch.from_numpy((raw - raw.mean()) / max(raw.std(), 1e-10))[None, None]
        with torch.no_grad():
            np.testing.assert_allclose(pred, model(x)[0, 0].numpy(), atol=1e-5)


def test_output_dir_postprocessor_and_overwrite(dsb, tmp_path):
    cfg, _, images = dsb
    cfg["loaders"]["output_dir"] = str(tmp_path / "out")
    cfg["predictor"] = {"name": "DSB2018Predictor", "pmaps_threshold": 0.5}
    cfg["postprocessor"] = {"name": "ConnectedComponents", "threshold": 0.5, "min_size": 3}
    written = run_prediction(cfg)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "a_predictions.h5",
        "b_predictions.h5",
    ]
    with h5py.File(written[0].path) as f:
        seg = f["segmentation"][...]
        sizes = np.bincount(seg.ravel())[1:]
        assert sizes.size == 0 or sizes.min() >= 3
    with pytest.raises(DataError, match="--overwrite"):
        run_prediction(cfg)
    assert len(run_prediction(cfg, overwrite=True)) == 2


def test_standard_predictor_on_whole_images_explains_the_fix(dsb):
    from unet_core.errors import ConfigError

    cfg, _, _ = dsb
    cfg["predictor"] = {"name": "StandardPredictor"}
    with pytest.raises(ConfigError, match="DSB2018Predictor"):
        run_prediction(cfg)


def test_config_validate_checks_dsb_folders_as_the_dataset_reads_them(dsb, tmp_path, capsys):
    """A DSB2018 folder holds images/ (and masks/), not volumes: it is valid; a missing folder
    or a file where a folder belongs is not."""
    import yaml
    from cli_support import run_here

    cfg, _, _ = dsb
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_here(capsys, "config", "validate", str(path))
    assert code == 0 and "valid" in out and "files checked" in out, err
    for entry, words in (
        (tmp_path / "nope", "does not exist"),
        (tmp_path / "m.pytorch", "is a file; DSB2018Dataset expects folders"),
    ):
        cfg["loaders"]["test"]["file_paths"] = [str(entry)]
        path.write_text(yaml.safe_dump(cfg))
        code, _, err = run_here(capsys, "config", "validate", str(path))
        assert code == 2 and "loaders.test.file_paths" in err and words in err, err


def test_a_preview_of_2d_image_outputs(dsb):
    """DSB2018Predictor writes (Y,X) arrays: the preview draws them (it expected Z,Y,X)."""
    from unet_core.prediction.preview import write_preview

    cfg, _, images = dsb
    cfg["postprocessor"] = {"name": "ConnectedComponents"}
    (written, _) = run_prediction(cfg)
    png = write_preview(written.path, images / "a_preview.png", source=written.source)
    assert png.read_bytes().startswith(b"\x89PNG")
