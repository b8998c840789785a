"""Held-out quality of fast mode against fp32 reference mode, with fully trained models (issue 17).

Each checkpoint (e.g. the best checkpoints that ``quality.py --out DIR`` keeps: the issue-19
task network, UNet3D f_maps [16,32,64,128], trained 200 iterations on nuclei3d_train_a.h5 with
32x64x64 patches and per-patch ``Standardize``) predicts three sizes of nuclei3d_train_b.h5,
a volume it never trained on: the whole 100^3, a 70x90x95 crop and a 31x61x57 crop (smaller
than one fast tile). Each is predicted in reference mode (fp32, the reference's overwrite
blending, stride half the patch) and in fast mode at its default precision (``auto``: bf16
where the CPU computes it natively) and in fp32, and scored by foreground Dice against the
labels. Prints one JSON line per checkpoint and volume, then the mean and the largest
difference fast - reference per volume.

    python benchmarks/fast_quality.py /tmp/q/nuclei/*/checkpoints/best_checkpoint.pytorch
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from quality import TASK_UNET
from workloads import DATA

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

#: name -> (region of nuclei3d_train_b.h5, test patch)
VOLUMES = {
    "100^3": ((slice(None),) * 3, (32, 64, 64)),
    "70x90x95": ((slice(15, 85), slice(5, 95), slice(3, 98)), (32, 64, 64)),
    "31x61x57": ((slice(10, 41), slice(20, 81), slice(30, 87)), (16, 32, 32)),
}
MODES = {
    "reference": {"name": "StandardPredictor"},
    "fast": {"name": "StandardPredictor", "fast": True},
    "fast_fp32": {"name": "StandardPredictor", "fast": True, "amp": "none"},
}


def dice(path: str, truth: np.ndarray) -> float:
    with h5py.File(path, "r") as f:
        pred = f["predictions"][0] > 0.5
    return float(2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum()))


def score(checkpoint: Path, name: str, work: Path) -> dict:
    from predict_support import config

    from unet_core.prediction.run import run_prediction

    region, patch = VOLUMES[name]
    with h5py.File(DATA / "nuclei3d_train_b.h5", "r") as f:
        raw, label = f["raw"][region], f["label"][region]
    volume = work / f"{name}.h5"
    with h5py.File(volume, "w") as f:
        f["raw"] = raw
    result: dict = {"checkpoint": str(checkpoint), "volume": name}
    for mode, predictor in MODES.items():
        cfg = config(
            TASK_UNET,
            checkpoint,
            [volume],
            work / f"{name}-{mode}",
            patch=patch,
            stride=tuple(max(1, p // 2) for p in patch),
            halo=(0, 0, 0),
            predictor=dict(predictor),
        )
        cfg["loaders"]["global_normalization"] = False
        (written,) = run_prediction(cfg)
        result[mode] = round(dice(written.path, label > 0), 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="unet-fast-quality-") as tmp:
        for i, checkpoint in enumerate(args.checkpoints):
            for name in VOLUMES:
                work = Path(tmp) / f"{i}"
                work.mkdir(exist_ok=True)
                rows.append(score(checkpoint, name, work))
                print(json.dumps(rows[-1]), flush=True)
    for name in VOLUMES:
        mine = [r for r in rows if r["volume"] == name]
        for mode in ("fast", "fast_fp32"):
            diffs = [r[mode] - r["reference"] for r in mine]
            print(
                f"{name:9s} {mode:9s} reference {statistics.mean(r['reference'] for r in mine):.4f}"
                f"  {mode} {statistics.mean(r[mode] for r in mine):.4f}  difference mean "
                f"{statistics.mean(diffs):+.4f}, largest |{max(diffs, key=abs):+.4f}| "
                f"over {len(mine)} models"
            )


if __name__ == "__main__":
    main()
