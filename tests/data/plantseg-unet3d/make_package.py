"""How this folder was made (not run by the tests; CI has no pytorch-3dunet).

A package built the way PlantSeg publishes its UNet3D models on bioimage.io (spec 0.4 layout:
``architecture: pytorch3dunet.unet3d.model:UNet3D`` + kwargs, ``pytorch_state_dict`` weights,
``zero_mean_unit_variance`` per sample), with a tiny network made by the reference itself,
pytorch-3dunet 1.9.6. ``test_input.npy`` is a crop of the real nuclei volume
(examples/data/nuclei3d_train_b.h5) and ``test_output.npy`` the reference network's output
on it, normalised as the package states. Run with the reference's interpreter:

    /work/refvenv/bin/python tests/data/plantseg-unet3d/make_package.py
"""

import hashlib
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml
from pytorch3dunet.unet3d.model import UNet3D

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[2] / "examples" / "data" / "nuclei3d_train_b.h5"
KWARGS = {
    "in_channels": 1,
    "out_channels": 1,
    "layer_order": "crg",
    "f_maps": 4,
    "num_groups": 2,
    "num_levels": 2,
    "final_sigmoid": True,
    "is_segmentation": True,
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    torch.manual_seed(16)
    model = UNet3D(**KWARGS).eval()
    torch.save(model.state_dict(), HERE / "weights.pt")
    with h5py.File(DATA) as f:
        raw = f["raw"][30:46, 20:44, 30:54].astype(np.float32)[None, None]
    np.save(HERE / "test_input.npy", raw)
    x = (raw - raw.mean()) / (raw.std() + 1e-6)  # zero_mean_unit_variance, per sample
    with torch.no_grad():
        y = model(torch.from_numpy(x)).numpy()
    np.save(HERE / "test_output.npy", y.astype(np.float32))
    rdf = {
        "format_version": "0.4.10",
        "type": "model",
        "name": "PlantSeg-style tiny UNet3D",
        "description": "A pytorch-3dunet UNet3D packaged as PlantSeg publishes its models.",
        "authors": [{"name": "unet-core tests"}],
        "license": "MIT",
        "documentation": "make_package.py",
        "cite": [{"text": "Wolny et al. 2020, eLife", "doi": "10.7554/eLife.57613"}],
        "test_inputs": ["test_input.npy"],
        "test_outputs": ["test_output.npy"],
        "timestamp": "2026-12-06T00:00:00",
        "inputs": [
            {
                "name": "raw",
                "axes": "bczyx",
                "data_type": "float32",
                "data_range": ["-inf", "inf"],
                "shape": {"min": [1, 1, 16, 16, 16], "step": [0, 0, 2, 2, 2]},
                "preprocessing": [
                    {
                        "name": "zero_mean_unit_variance",
                        "kwargs": {"mode": "per_sample", "axes": "zyx"},
                    }
                ],
            }
        ],
        "outputs": [
            {
                "name": "probabilities",
                "axes": "bczyx",
                "data_type": "float32",
                "data_range": [0, 1],
                "shape": {
                    "reference_tensor": "raw",
                    "scale": [1, 1, 1, 1, 1],
                    "offset": [0, 0, 0, 0, 0],
                },
            }
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": "weights.pt",
                "sha256": sha256(HERE / "weights.pt"),
                "architecture": "pytorch3dunet.unet3d.model:UNet3D",
                "kwargs": KWARGS,
            }
        },
    }
    (HERE / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))


if __name__ == "__main__":
    main()
