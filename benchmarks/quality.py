"""Real-data quality at a fixed iteration budget (issue 9; figures go to docs/performance.md).

1. Nuclei: train UNet3D on nuclei3d_train_a.h5, validate on nuclei3d_train_b.h5, predict b,
   connected components -> voxel Dice and instance F1 (IoU 0.5) against b's labels.
2. Boundaries: train on the first Y half of ovule_boundary.h5, predict the second half,
   seeded watershed on the boundary map -> adapted Rand error (scikit-image) against its labels.

    python benchmarks/quality.py [--iterations 400] [--task nuclei|ovule|both] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from workloads import DATA

from unet_core.config import phase_section

#: The network both tasks train: small enough for a CPU budget, the reference's block design.
SMALL_UNET = {
    "name": "UNet3D",
    "in_channels": 1,
    "out_channels": 1,
    "f_maps": 16,
    "num_groups": 8,
    "num_levels": 3,
    "final_sigmoid": True,
}


def _experiment(
    out: Path,
    files: dict,
    iterations: int,
    label_tf: list,
    patch: list[int],
    postprocessor: dict,
) -> dict:
    """Both tasks: the same network, BCEDiceLoss and Dice validation; they differ in labels,
    patch and segmentation."""
    aug = [{"name": "RandomFlip"}, {"name": "RandomRotate90"}]
    raw_train = [{"name": "Standardize"}, *aug, {"name": "ToTensor", "expand_dims": True}]
    half = [max(1, p // 2) for p in patch]
    return {
        "manual_seed": 0,
        "model": dict(SMALL_UNET),
        "loss": {"name": "BCEDiceLoss"},
        "eval_metric": {"name": "DiceCoefficient"},
        "optimizer": {"name": "Adam", "learning_rate": 0.001, "weight_decay": 0.00001},
        "trainer": {
            "checkpoint_dir": str(out / "checkpoints"),
            "max_num_epochs": 10000,
            "max_num_iterations": iterations,
            "validate_after_iters": max(1, iterations // 4),
            "log_after_iters": max(1, iterations // 4),
            "log_images": False,
        },
        "loaders": {
            "num_workers": 0,
            "output_dir": str(out / "predictions"),
            "train": phase_section(
                [files["train"]], patch, half, raw=raw_train, label=[*aug, *label_tf]
            ),
            "val": phase_section([files["val"]], patch, label=label_tf),
            "test": phase_section([files["val"]], patch, half),
        },
        "predictor": {"name": "StandardPredictor", "fast": True},
        "postprocessor": postprocessor,
        "model_path": str(out / "checkpoints" / "best_checkpoint.pytorch"),
    }


def _train_predict(cfg: dict) -> tuple[np.ndarray, np.ndarray, float]:
    import unet_core
    from unet_core.config import config_from_dict

    start = time.perf_counter()
    unet_core.train(config_from_dict(cfg), overwrite=True)  # the benchmark's own folder
    path = unet_core.predict(config_from_dict(cfg)).paths[0]
    with h5py.File(path, "r") as f:
        return f["predictions"][:], f["segmentation"][:], time.perf_counter() - start


def nuclei(out: Path, iterations: int) -> dict:
    from unet_core import registry

    files = {"train": DATA / "nuclei3d_train_a.h5", "val": DATA / "nuclei3d_train_b.h5"}
    label_tf = [{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}]
    cfg = _experiment(
        out,
        files,
        iterations,
        label_tf,
        [48, 64, 64],
        {"name": "ConnectedComponents", "threshold": 0.5, "min_size": 30},
    )
    pred, seg, seconds = _train_predict(cfg)
    with h5py.File(files["val"], "r") as f:
        truth = f["label"][:].astype(np.int64)
    fg = pred[0] > 0.5
    dice = 2 * np.logical_and(fg, truth > 0).sum() / max(1, fg.sum() + (truth > 0).sum())
    f1 = registry.create("metrics", {"name": "InstanceF1", "iou_threshold": 0.5})
    return {
        "task": "nuclei",
        "iterations": iterations,
        "seconds": round(seconds, 1),
        "dice": round(float(dice), 4),
        "instance_f1@0.5": round(f1.score(truth, seg), 4),
        "objects_true": int(truth.max()),
        "objects_found": int(len(np.unique(seg)) - 1),
    }


def ovule(out: Path, iterations: int) -> dict:
    from skimage.metrics import adapted_rand_error

    with h5py.File(DATA / "ovule_boundary.h5", "r") as f:
        raw, label = f["raw"][:], f["label"][:]
    half = raw.shape[1] // 2
    files = {}
    for phase, ys in (("train", slice(0, half)), ("val", slice(half, None))):
        path = out / f"ovule_{phase}.h5"
        with h5py.File(path, "w") as f:
            f["raw"], f["label"] = raw[:, ys], label[:, ys]
        files[phase] = path
    label_tf = [{"name": "StandardLabelToBoundary"}, {"name": "ToTensor", "expand_dims": False}]
    cfg = _experiment(
        out,
        files,
        iterations,
        label_tf,
        [32, 64, 64],
        {"name": "SeededWatershed", "boundary_channel": 0, "seed_threshold": 0.4, "min_size": 50},
    )
    cfg["loaders"]["train"]["slice_builder"]["skip_shape_check"] = True
    pred, seg, seconds = _train_predict(cfg)
    truth = label[:, half:]
    arand = adapted_rand_error(truth.astype(np.int64), seg.astype(np.int64))[0]
    return {
        "task": "ovule boundaries",
        "iterations": iterations,
        "seconds": round(seconds, 1),
        "adapted_rand_error": round(float(arand), 4),
        "cells_true": int(len(np.unique(truth))),
        "cells_found": int(len(np.unique(seg))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--task", choices=["nuclei", "ovule", "both"], default="both")
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    out = args.out or Path(tempfile.mkdtemp(prefix="unet-quality-"))
    results = []
    if args.task in ("nuclei", "both"):
        results.append(nuclei(out / "nuclei", args.iterations))
    if args.task in ("ovule", "both"):
        (out / "ovule").mkdir(parents=True, exist_ok=True)
        results.append(ovule(out / "ovule", args.iterations))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
