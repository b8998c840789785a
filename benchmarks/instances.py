"""Nuclei instances beyond the reference (issue 19): the quality benchmark's nuclei task, with
instance targets and seeded watershed, side by side with its connected-components baseline.

Both train the quality benchmark's network on nuclei3d_train_a.h5 (validation on
nuclei3d_train_b.h5) at the same budget and predict nuclei3d_train_b.h5:

* baseline: one output channel (BlobsToMask foreground), connected components of p > 0.5 with
  min_size 30 (the issue-9 quality task, defined here: F1@0.5 0.600 at 400 iterations);
* instances: two output channels, foreground + normalised distance (LabelToDistance), seeded
  watershed on the predicted distance (SeededWatershed distance_channel), min_size: auto learnt
  from nuclei3d_train_a's labels; the learning rate drops to 0.3x at the 2nd and 3rd of the
  four validations (the scenario's MultiStepLR).

The baseline's prediction is also segmented by the seeded watershed on the foreground's distance
transform (post-processing alone), and the two-channel model's foreground by connected
components. Every row is scored by InstanceScores (F1 at IoU 0.5 and 0.75, panoptic quality)
against nuclei3d_train_b's labels. ``--model baseline`` / ``instances`` runs one of the two
trainings, so that two processes can run them side by side. ``--seed`` sets the training's
``manual_seed``; ``--tta none,flips`` predicts the trained checkpoint once per test-time
augmentation setting (rows for each), so that its effect is measured on the same model.

    python benchmarks/instances.py [--iterations 400] [--model both] [--seed 0] \
        [--tta none,flips] [--out DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import yaml
from workloads import DATA, ROOT

from unet_core.config import phase_section

#: The network of the issue-9 quality task (its F1@0.5 0.600 at 400 iterations is the baseline):
#: small enough for a CPU budget, the reference's block design.
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
    seed: int = 0,
) -> dict:
    """The issue-9 nuclei task: BCEDiceLoss, Dice validation, fast-mode prediction of the
    validation volume; the models differ in labels and segmentation."""
    aug = [{"name": "RandomFlip"}, {"name": "RandomRotate90"}]
    raw_train = [{"name": "Standardize"}, *aug, {"name": "ToTensor", "expand_dims": True}]
    half = [max(1, p // 2) for p in patch]
    return {
        "manual_seed": seed,
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


def _train_predict(cfg: dict, ttas: list[str]) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """Train once, then predict the best checkpoint once per TTA setting:
    (tta, predictions, segmentation, seconds of training + that prediction)."""
    import unet_core
    from unet_core.config import config_from_dict

    start = time.perf_counter()
    unet_core.train(config_from_dict(cfg), overwrite=True)  # the benchmark's own folder
    trained = time.perf_counter() - start
    results = []
    for tta in ttas:
        run = copy.deepcopy(cfg)
        run["predictor"]["tta"] = tta
        run["loaders"]["output_dir"] = f"{cfg['loaders']['output_dir']}/tta-{tta}"
        begin = time.perf_counter()
        path = unet_core.predict(config_from_dict(run)).paths[0]
        with h5py.File(path, "r") as f:
            seconds = trained + time.perf_counter() - begin
            results.append((tta, f["predictions"][:], f["segmentation"][:], seconds))
    return results


TRAIN, VAL = DATA / "nuclei3d_train_a.h5", DATA / "nuclei3d_train_b.h5"
PATCH = [48, 64, 64]
BASELINE_CC = {"name": "ConnectedComponents", "threshold": 0.5, "min_size": 30}
LEARNT_SIZE = {"min_size": "auto", "size_labels": [str(TRAIN)]}
#: Seeded watershed on a model with a distance channel (the scenario's test_config.yml).
DISTANCE_WATERSHED = {
    "name": "SeededWatershed",
    "foreground_channel": 0,
    "distance_channel": 1,
    "boundary_channel": None,
    "distance_threshold": 0.5,
    "seed_method": "components",
    "sigma": 1.0,
    **LEARNT_SIZE,
}
#: Seeded watershed on a one-channel foreground (its distance transform).
FOREGROUND_WATERSHED = {
    "name": "SeededWatershed",
    "foreground_channel": 0,
    "boundary_channel": None,
    "min_distance": 4,
    "sigma": 1.5,
    **LEARNT_SIZE,
}


#: The scenario whose training the two-channel model is (its schedule: 0.3x the learning rate
#: at the 2nd and 3rd validation, iterations 200 and 300 of 400).
SCENARIO_TRAINING = ROOT / "examples" / "configs" / "3DUnet_nuclei_instances" / "train_config.yml"
LR_DROP = yaml.safe_load(SCENARIO_TRAINING.read_text())["lr_scheduler"]


def score(truth: np.ndarray, seg: np.ndarray) -> dict[str, float]:
    from unet_core import registry

    metric = registry.create("metrics", {"name": "InstanceScores"})
    values = metric.sample_scores(truth, seg)
    out = {k: round(values[k], 4) for k in ("f1@0.5", "f1@0.75", "pq", "sq", "rq")}
    return out | {"objects_found": int(len(np.unique(seg)) - 1)} | error_places(truth, seg)


def error_places(truth: np.ndarray, seg: np.ndarray) -> dict[str, int]:
    """Misses (fn) and false detections (fp) at IoU 0.5, and how many of each touch a face of
    the volume: the errors of this task are nearly all there (cut nuclei, annotations that stop
    short), so the split says whether a change fixed anything inside the volume."""
    from unet_plugins.metrics.matching import iou_matrix, matched_pairs
    from unet_plugins.postprocessors.sizes import edge_ids

    rows, cols = matched_pairs(iou_matrix(truth, seg), 0.5)
    out = {}
    for name, labels, matched in (("fn", truth, rows), ("fp", seg, cols)):
        ids = np.unique(labels[labels != 0])  # row/column i is ids[i]
        wrong = np.delete(ids, matched)
        out[name] = int(wrong.size)
        out[f"{name}_at_faces"] = int(np.isin(wrong, edge_ids(labels)).sum())
    return out


def segment(prediction: np.ndarray, spec: dict) -> np.ndarray:
    from unet_core import registry

    return np.asarray(registry.create("postprocessors", spec)(prediction))


def _truth() -> tuple[np.ndarray, dict]:
    with h5py.File(VAL, "r") as f:
        truth = f["label"][:].astype(np.int64)
    return truth, {"objects_true": int(len(np.unique(truth)) - 1)}


@dataclass(frozen=True)
class Model:
    """One of the two trainings: its targets and outputs, the postprocessor in its config,
    and a second segmentation of the same prediction for comparison."""

    label: str
    label_tf: tuple[dict, ...]
    out_channels: int
    own: tuple[str, dict]
    other: tuple[str, dict]
    #: The config's lr_scheduler (None: a constant learning rate, the issue-9 task's).
    schedule: dict | None = None


MODELS = {
    # one channel + connected components (quality.py's nuclei task), and the same prediction
    # segmented by the seeded watershed on the foreground's distance transform
    "baseline": Model(
        "1 channel (foreground)",
        ({"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}),
        1,
        ("connected components, min_size 30", BASELINE_CC),
        ("watershed on fg EDT, min_size auto", FOREGROUND_WATERSHED),
    ),
    # two channels (foreground + distance) + seeded watershed on the distance; the same
    # prediction's foreground by connected components for comparison
    "instances": Model(
        "2 channels (fg + distance)",
        ({"name": "LabelToDistance"}, {"name": "ToTensor", "expand_dims": False}),
        2,
        ("watershed on distance, min_size auto", DISTANCE_WATERSHED),
        ("connected components, min_size 30", BASELINE_CC),
        LR_DROP,
    ),
}


def run_model(
    name: str,
    out: Path,
    iterations: int,
    seed: int = 0,
    ttas: tuple[str, ...] = ("none",),
    overrides: Sequence[str] = (),
) -> list[dict]:
    """Train ``MODELS[name]`` with the ``--set`` ``overrides``, predict once per TTA setting,
    and score two segmentations of each prediction: the config's own postprocessor and the
    model's ``other``."""
    from unet_core.config.overrides import apply_overrides

    spec = MODELS[name]
    files = {"train": TRAIN, "val": VAL}
    cfg = _experiment(out, files, iterations, list(spec.label_tf), PATCH, spec.own[1], seed)
    cfg["model"]["out_channels"] = spec.out_channels
    if spec.schedule is not None:
        cfg["lr_scheduler"] = dict(spec.schedule)
    apply_overrides(cfg, overrides)
    truth, common = _truth()
    head = {"model": spec.label, "iterations": cfg["trainer"]["max_num_iterations"]}
    head |= {"seed": cfg["manual_seed"], **common}
    rows = []
    for tta, pred, seg, seconds in _train_predict(cfg, list(ttas)):
        row = head | {"tta": tta, "train+predict s": round(seconds, 1)}
        rows += [
            row | {"segmentation": spec.own[0]} | score(truth, seg),
            row | {"segmentation": spec.other[0]} | score(truth, segment(pred, spec.other[1])),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    parser.add_argument(
        "--model",
        choices=["baseline", "instances", "both"],
        default="both",
        help="which training(s) to run (two processes can run one each)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the training's manual_seed")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of the experiment's config, as `unet train --set` does (e.g. "
        "loaders.global_normalization=true); repeatable",
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (1 when two runs share 2 cores)"
    )
    parser.add_argument(
        "--tta",
        default="none",
        help="comma-separated predictor.tta settings to predict the trained model with "
        "(none, flips, flips_rot90)",
    )
    args = parser.parse_args()
    ttas = tuple(t.strip() for t in args.tta.split(",") if t.strip())
    from unet_core.engine.allocator import keep_freed_memory

    keep_freed_memory()  # as `unet train` does
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="unet-instances-"))
    rows = []
    for name in MODELS if args.model == "both" else [args.model]:
        rows += run_model(name, out / name, args.iterations, args.seed, ttas, args.overrides)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
