"""A tiny network trained for a few iterations on the real nuclei volume, for the export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from test_train_support import reference_config, tiny

TINY_MODEL = {"f_maps": 4, "num_levels": 2, "num_groups": 2}


def train_tiny(folder: Path, iterations: int = 2, **model: Any) -> Path:
    """Train (in process) and return the best checkpoint; it stores its config."""
    from unet_core.config import config_from_dict
    from unet_core.training.run import train

    cfg = tiny(reference_config(folder / "checkpoints"), iterations=iterations, every=iterations)
    cfg["model"].update(TINY_MODEL, **model)
    torch.manual_seed(0)
    train(config_from_dict(cfg))
    return folder / "checkpoints" / "best_checkpoint.pytorch"


META = {"name": "Tiny nuclei", "authors": [{"name": "Test Author"}], "license": "MIT"}
#: The crop of the nuclei volume that package predictions are compared on.
CROP_AT = np.s_[30:62, 10:74, 20:84]
CROP = (32, 64, 64)
STANDARDIZE = [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]


def export_tiny_package(folder: Path) -> dict[str, Path]:
    """Train the tiny network, export it as a bioimage.io zip (with ONNX) and unpack it."""
    import zipfile

    import yaml

    from unet_core.cli.errors import run_cli
    from unet_core.cli.main import cli

    torch.set_num_threads(1)
    checkpoint = train_tiny(folder)
    meta = folder / "meta.yaml"
    meta.write_text(yaml.safe_dump(META))
    package = folder / "nuclei.zip"
    args = ["export", str(checkpoint), "--format", "bioimageio", "-o", str(package)]
    try:
        run_cli(cli, [*args, "--metadata", str(meta), "--onnx"])
    except SystemExit as exc:
        assert not exc.code
    unpacked = folder / "unpacked"
    with zipfile.ZipFile(package) as z:
        z.extractall(unpacked)
    return {"checkpoint": checkpoint, "package": package, "folder": unpacked, "root": folder}


def crop_file(out: Path) -> Path:
    """The crop as an HDF5 file in ``out`` (written once)."""
    import h5py
    from test_train_support import DATA

    crop = out / "crop.h5"
    if not crop.exists():
        out.mkdir(parents=True, exist_ok=True)
        with h5py.File(DATA / "nuclei3d_train_b.h5") as f, h5py.File(crop, "w") as g:
            g["raw"] = f["raw"][CROP_AT]
    return crop


def predict_crop(
    model_path: Path, out: Path, raw: list | None = None, whole: bool = False, **model: Any
) -> np.ndarray:
    """`unet predict`'s engine on the crop of the nuclei volume; returns the predictions.

    ``raw``: the test transforms (default Standardize + ToTensor); ``whole``: one patch of
    the whole crop (what bioimageio.core computes without tiling); ``model``: model keys
    beside the tiny network's (used for a checkpoint, not for a package).
    """
    import h5py

    from unet_core.config import config_from_dict
    from unet_core.prediction.run import predict

    crop = crop_file(out)
    builder = {
        "name": "SliceBuilder",
        "patch_shape": list(CROP) if whole else [16, 32, 32],
        "stride_shape": list(CROP) if whole else [12, 24, 24],
        "halo_shape": [0, 0, 0],
        "skip_shape_check": True,
    }
    cfg = {
        "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1, **TINY_MODEL, **model},
        "model_path": str(model_path),
        "device": "cpu",
        "predictor": {"name": "StandardPredictor"},
        "loaders": {
            "dataset": "StandardHDF5Dataset",
            "output_dir": str(out / Path(str(model_path)).name),
            "batch_size": 1,
            "num_workers": 0,
            "raw_internal_path": "raw",
            "global_normalization": True,
            "test": {
                "file_paths": [str(crop)],
                "slice_builder": builder,
                "transformer": {"raw": raw or STANDARDIZE},
            },
        },
    }
    [path] = predict(config_from_dict(cfg))
    with h5py.File(path) as f:
        return f["predictions"][...]
