"""Real-data quality at a fixed budget, ours side by side with pytorch-3dunet (issues 9, 19).

Both systems train from one config dict (the reference's keys; it runs through its own
``train3dunet`` entry point, in the ``--reference`` python's environment, with a YAML written to a
temporary folder). Each best checkpoint is then predicted by the same predictor (ours, the
reference's overwrite mode, which equals the reference's output) so that only training differs:

1. nuclei: UNet3D f_maps [16,32,64,128], BCEDiceLoss, Adam 1e-3, ReduceLROnPlateau; train on
   nuclei3d_train_a.h5, validate on the first 50 z-slices of nuclei3d_train_b.h5, predict the
   other 50 (held back) -> voxel Dice and instance F1 (connected components, IoU 0.5).
2. ovule: the same network on boundaries; train on the first Y half of ovule_boundary.h5,
   validate on and predict the second half, seeded watershed -> adapted Rand error.

    python benchmarks/quality.py --reference /work/refvenv/bin/python --seeds 0,1,2
    python benchmarks/quality.py --seeds 0,1,2 --amp bf16      # ours only, bf16 autocast
    python benchmarks/quality.py --task ovule --rescore OUT...   # re-segment stored runs
    python benchmarks/quality.py --systems reference --reference PY ...  # the reference alone

Prints one JSON line per run, then mean ± sample standard deviation (and range) per system.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from workloads import DATA

#: The issue's task network: the reference's UNet3D at a CPU-sized width.
TASK_UNET = {
    "name": "UNet3D",
    "in_channels": 1,
    "out_channels": 1,
    "f_maps": [16, 32, 64, 128],
    "layer_order": "gcr",
    "num_groups": 8,
    "final_sigmoid": True,
}
AUGMENT = [{"name": "RandomFlip"}, {"name": "RandomRotate90"}]


def phase(path: Path, patch: list[int], stride: list[int], raw: list, label: list | None) -> dict:
    section: dict[str, Any] = {
        "file_paths": [str(path)],
        "slice_builder": {
            "name": "SliceBuilder",
            "patch_shape": patch,
            "stride_shape": stride,
            "skip_shape_check": True,
        },
        "transformer": {"raw": raw},
    }
    if label is not None:
        section["transformer"]["label"] = label
    return section


def experiment(
    files: dict[str, Path], budget: tuple[int, int], label_tf: list, patch: list[int]
) -> dict:
    """The task config as the reference spells it (both systems read it unchanged).

    ``budget``: (iterations, validations); the scheduler's patience counts validations."""
    iterations, validations = budget
    half = [max(1, p // 2) for p in patch]
    tensor = [{"name": "ToTensor", "expand_dims": True}]
    every = max(1, iterations // validations)
    return {
        "device": "cpu",
        "model": dict(TASK_UNET),
        "loss": {"name": "BCEDiceLoss"},
        "eval_metric": {"name": "DiceCoefficient"},
        "optimizer": {"name": "Adam", "learning_rate": 0.001, "weight_decay": 0.00001},
        "lr_scheduler": {"name": "ReduceLROnPlateau", "mode": "max", "factor": 0.5, "patience": 2},
        "trainer": {
            "max_num_epochs": 10000,
            "max_num_iterations": iterations,
            "validate_after_iters": every,
            "log_after_iters": every,
        },
        "loaders": {
            "dataset": "StandardHDF5Dataset",
            "batch_size": 1,
            "num_workers": 1,
            "raw_internal_path": "raw",
            "label_internal_path": "label",
            "train": phase(
                files["train"],
                patch,
                half,
                [{"name": "Standardize"}, *AUGMENT, *tensor],
                [*AUGMENT, *label_tf],
            ),
            "val": phase(files["val"], patch, patch, [{"name": "Standardize"}, *tensor], label_tf),
        },
    }


# -- training, each system ------------------------------------------------------------------------
def train_ours(cfg: dict, folder: Path, seed: int, amp: str) -> dict:
    from unet_core.config import config_from_dict
    from unet_core.training.run import train

    cfg = json.loads(json.dumps(cfg))
    cfg["manual_seed"] = seed
    cfg["trainer"].update(checkpoint_dir=str(folder), amp=amp, progress="none", log_images=False)
    start = time.perf_counter()
    trainer = train(config_from_dict(cfg), overwrite=True)  # the benchmark's own folder
    return {
        "train_s": round(time.perf_counter() - start, 1),
        "best_val_dice": float(trainer.best_eval_score),
        "val_history": [round(score, 4) for _, score, _ in trainer.val_history],
        "checkpoint": folder / "best_checkpoint.pytorch",
    }


#: pytorch-3dunet's train3dunet main(), with a no-op SummaryWriter where the environment has no
#: tensorboard (the writer only records; training does not depend on it).
REFERENCE_MAIN = """
import os, sys, types
try:
    import torch.utils.tensorboard
except ImportError:
    class SummaryWriter:
        def __init__(self, log_dir, **kwargs):
            os.makedirs(log_dir, exist_ok=True)
        def __getattr__(self, name):
            return lambda *args, **kwargs: None
    sys.modules["torch.utils.tensorboard"] = types.SimpleNamespace(SummaryWriter=SummaryWriter)
from pytorch3dunet.train import main
main()
"""
VALIDATION_LINE = re.compile(r"Validation finished\. Loss: \S+\. Evaluation score: (\S+)")


def train_reference(
    cfg: dict,
    folder: Path,
    seed: int,
    args: argparse.Namespace,
    code: str = REFERENCE_MAIN,
    env: dict[str, str] | None = None,
) -> dict:
    """The same config through pytorch-3dunet's ``train3dunet`` (its main(), its argv);
    ``code`` may wrap that main() (quality_replay.py records the batches), ``env`` adds to
    its environment."""
    import torch
    import yaml

    cfg = json.loads(json.dumps(cfg))
    cfg["manual_seed"] = seed
    # it runs one step past max_num_iterations (REFERENCE.md §12.24): ask for one fewer
    cfg["trainer"].update(
        checkpoint_dir=str(folder), max_num_iterations=cfg["trainer"]["max_num_iterations"] - 1
    )
    folder.parent.mkdir(parents=True, exist_ok=True)  # it creates only the last level
    config_path = folder.parent / "train_config.yml"
    config_path.write_text(yaml.safe_dump(cfg))
    environ = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    done = subprocess.run(
        [args.reference, "-c", code, "--config", str(config_path)],
        capture_output=True,
        text=True,
        env=environ | (env or {}),
        cwd=folder.parent,
    )
    seconds = time.perf_counter() - start
    (folder.parent / "train.log").write_text(done.stdout + done.stderr)
    best = folder / "best_checkpoint.pytorch"
    if done.returncode != 0 or not best.is_file():
        raise SystemExit(f"the reference failed ({config_path}):\n{done.stderr[-3000:]}")
    state = torch.load(best, map_location="cpu", weights_only=True)
    return {
        "train_s": round(seconds, 1),
        "best_val_dice": float(state["best_eval_score"]),
        "val_history": [
            round(float(m), 4) for m in VALIDATION_LINE.findall(done.stdout + done.stderr)
        ],
        "checkpoint": best,
    }


def predict(cfg: dict, checkpoint: Path, test: Path, out: Path, post: dict, amp: str) -> Path:
    """Our predictor in the reference's mode (overwrite, patch stride = half the patch)."""
    import unet_core
    from unet_core.config import config_from_dict

    patch = cfg["loaders"]["train"]["slice_builder"]["patch_shape"]
    cfg = json.loads(json.dumps(cfg))
    cfg.pop("trainer")
    cfg["loaders"]["output_dir"] = str(out)
    tensor = [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]
    cfg["loaders"]["test"] = phase(test, patch, [max(1, p // 2) for p in patch], tensor, None)
    cfg["predictor"] = {"name": "StandardPredictor", "amp": amp}
    cfg["postprocessor"] = post
    cfg["model_path"] = str(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    return Path(unet_core.predict(config_from_dict(cfg), overwrite=True).paths[0])


# -- tasks ----------------------------------------------------------------------------------------
def split(source: Path, out: Path, axis: int, names: tuple[str, str]) -> dict[str, Path]:
    """Two files from the halves of ``source`` along ``axis`` (the inputs are never written)."""
    with h5py.File(source, "r") as f:
        raw, label = f["raw"][:], f["label"][:]
    cut = raw.shape[axis] // 2
    paths = {}
    for name, part in zip(names, (slice(0, cut), slice(cut, None))):
        index = tuple(part if a == axis else slice(None) for a in range(raw.ndim))
        path = out / f"{source.stem}_{name}.h5"
        with h5py.File(path, "w") as f:
            f["raw"], f["label"] = raw[index], label[index]
        paths[name] = path
    return paths


def nuclei_task(out: Path, budget: tuple[int, int]) -> tuple[dict, dict]:
    held = split(DATA / "nuclei3d_train_b.h5", out, axis=0, names=("val", "test"))
    files = {"train": DATA / "nuclei3d_train_a.h5", **held}
    label_tf = [{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}]
    cfg = experiment(files, budget, label_tf, [32, 64, 64])
    post = {"name": "ConnectedComponents", "threshold": 0.5, "min_size": 30}
    return cfg, {"test": files["test"], "post": post}


def ovule_task(out: Path, budget: tuple[int, int]) -> tuple[dict, dict]:
    files = split(DATA / "ovule_boundary.h5", out, axis=1, names=("train", "val"))
    label_tf = [{"name": "StandardLabelToBoundary"}, {"name": "ToTensor", "expand_dims": False}]
    cfg = experiment(files, budget, label_tf, [32, 64, 64])
    # fragments that no predicted membrane separates are merged (the threshold chosen on the
    # training halves' predictions: 0.4 and 0.5 tie there; docs/performance.md)
    post = {
        "name": "SeededWatershed",
        "boundary_channel": 0,
        "seed_threshold": 0.4,
        "min_size": 50,
        "merge_threshold": 0.5,
    }
    return cfg, {"test": files["val"], "post": post}


def score_nuclei(pred: np.ndarray, seg: np.ndarray, truth_file: Path) -> dict:
    from unet_core import registry

    with h5py.File(truth_file, "r") as f:
        truth = f["label"][:].astype(np.int64)
    fg = pred[0] > 0.5
    dice = 2 * np.logical_and(fg, truth > 0).sum() / max(1, fg.sum() + (truth > 0).sum())
    f1 = registry.create("metrics", {"name": "InstanceF1", "iou_threshold": 0.5})
    return {
        "dice": round(float(dice), 4),
        "instance_f1@0.5": round(float(f1.score(truth, seg)), 4),
        "objects_true": int(len(np.unique(truth)) - 1),
        "objects_found": int(len(np.unique(seg)) - 1),
    }


def score_ovule(pred: np.ndarray, seg: np.ndarray, truth_file: Path) -> dict:
    from skimage.metrics import adapted_rand_error

    with h5py.File(truth_file, "r") as f:
        truth = f["label"][:]
    arand = adapted_rand_error(truth.astype(np.int64), seg.astype(np.int64))[0]
    return {
        "adapted_rand_error": round(float(arand), 4),
        "cells_true": int(len(np.unique(truth))),
        "cells_found": int(len(np.unique(seg))),
    }


def score_file(score: Any, path: Path, truth_file: Path) -> dict:
    """``score`` (a task's) of the prediction and segmentation a predictor wrote to ``path``."""
    with h5py.File(path, "r") as f:
        return dict(score(f["predictions"][:], f["segmentation"][:], truth_file))


TASKS = {
    "nuclei": (nuclei_task, score_nuclei),
    "ovule boundaries": (ovule_task, score_ovule),
}


def run(task: str, system: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    """Train one system on one task with one seed, predict the held-back data, score it."""
    import torch

    torch.set_num_threads(args.threads)
    make, score = TASKS[task]
    name = f"{system}-seed{seed}"
    folder = out / task.split()[0] / name
    folder.mkdir(parents=True, exist_ok=True)
    cfg, test = make(folder, (args.iterations, args.validations))
    if system == "reference":
        trained = train_reference(cfg, folder / "checkpoints", seed, args)
    else:
        trained = train_ours(cfg, folder / "checkpoints", seed, args.amp)
    amp = args.amp if system == "ours" else "none"
    checkpoint = trained.pop("checkpoint")
    path = predict(cfg, checkpoint, test["test"], folder / "predictions", test["post"], amp)
    scores = score_file(score, path, test["test"])
    system_name = system if system == "reference" or args.amp == "none" else f"ours-{args.amp}"
    return {
        "task": task,
        "system": system_name,
        "seed": seed,
        "iterations": args.iterations,
        **trained,
        **scores,
    }


RUN_FOLDER = re.compile(r"(?P<system>.+)-seed(?P<seed>\d+)$")


def rescore(task: str, folder: Path) -> dict:
    """Score a finished run again from its stored prediction, segmented with the task's
    current postprocessor (post-processing changes need no retraining); writes nothing into
    ``folder``."""
    import torch

    from unet_core import registry

    make, score = TASKS[task]
    with tempfile.TemporaryDirectory() as tmp:
        _, test = make(Path(tmp), (1, 1))  # the same deterministic split as the run's
        (path,) = sorted((folder / "predictions").glob("*_predictions.h5"))
        with h5py.File(path, "r") as f:
            pred = f["predictions"][:]
        seg = registry.create("postprocessors", test["post"])(pred)
        scores = score(pred, seg, test["test"])
    best = folder / "checkpoints" / "best_checkpoint.pytorch"
    state = torch.load(best, map_location="cpu", weights_only=True)
    match = RUN_FOLDER.match(folder.name)
    assert match, folder
    return {
        "task": task,
        "system": match["system"],
        "seed": int(match["seed"]),
        "rescored": str(path),
        "best_val_dice": float(state["best_eval_score"]),
        **scores,
    }


SUMMARY_KEYS = ("best_val_dice", "dice", "instance_f1@0.5", "adapted_rand_error")


def summary(results: list[dict]) -> list[str]:
    """``mean ± sample std (min-max)`` per task, system and score."""
    lines = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["task"], r["system"]), []).append(r)
    for (task, system), runs in groups.items():
        cells = []
        for key in SUMMARY_KEYS:
            values = [r[key] for r in runs if key in r]
            if not values:
                continue
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(
                f"{key} {statistics.mean(values):.3f} ± {sd:.3f} "
                f"({min(values):.3f}-{max(values):.3f})"
            )
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(f"{task:16s} {system:10s} seeds {seeds}: " + "; ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--validations", type=int, default=10, help="per run, evenly spaced")
    parser.add_argument("--task", choices=["nuclei", "ovule", "both"], default="nuclei")
    parser.add_argument("--seeds", default="0", help="comma-separated manual_seed values")
    parser.add_argument("--reference", help="python of a venv with pytorch3dunet==1.9.6")
    parser.add_argument(
        "--systems",
        choices=["ours", "reference", "ours,reference", "reference,ours"],
        help="which to train (default: ours, and the reference when --reference is given)",
    )
    parser.add_argument(
        "--amp", choices=["none", "bf16", "auto"], default="none", help="ours: trainer/predictor"
    )
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (own processes)")
    parser.add_argument(
        "--rescore",
        type=Path,
        nargs="+",
        help="instead of training: segment and score the stored predictions of earlier runs "
        "(their --out folders) with the current post-processing",
    )
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    tasks = {"nuclei": ["nuclei"], "ovule": ["ovule boundaries"]}.get(
        args.task, ["nuclei", "ovule boundaries"]
    )
    if args.rescore:
        found = [
            (task, folder)
            for task in tasks
            for out in args.rescore
            for folder in sorted((out / task.split()[0]).glob("*-seed*"))
        ]
        rescored = [rescore(task, folder) for task, folder in found]
        rescored.sort(key=lambda r: (r["task"], r["system"], r["seed"]))
        for r in rescored:
            print(json.dumps(r), flush=True)
        print("\n".join(summary(rescored)))
        return
    systems = args.systems.split(",") if args.systems else ["ours"]
    if args.reference and not args.systems:
        systems.append("reference")
    if "reference" in systems and not args.reference:
        parser.error("--systems reference needs --reference PYTHON")
    out = args.out or Path(tempfile.mkdtemp(prefix="unet-quality-"))
    todo = [(task, system, seed) for task in tasks for seed in seeds for system in systems]
    results = []
    if args.jobs <= 1:
        for task, system, seed in todo:
            results.append(run(task, system, seed, args, out))
            print(json.dumps(results[-1]), flush=True)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = [pool.submit(run, *job, args, out) for job in todo]
            for future in as_completed(futures):
                results.append(future.result())
                print(json.dumps(results[-1]), flush=True)
        results.sort(key=lambda r: (r["task"], r["system"], r["seed"]))
    if len(results) > 1:
        print("\n".join(summary(results)))


if __name__ == "__main__":
    main()
