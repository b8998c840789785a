"""Controlled comparison with pytorch-3dunet, piece by piece, at a tiny budget (issue 19).

Where could a reference config train differently here? Each check feeds both systems the same
thing and prints how far apart they come out:

* init: the model built after ``manual_seed`` (same layer order, PyTorch's default init);
* steps: from the same weights, K Adam steps of BCEDiceLoss on the same real patches; then the
  validation Dice of both models on one held-out patch (contiguous and channels_last_3d);
* scheduler: ReduceLROnPlateau fed one sequence of validation scores (what a patience step is);
* normalisation: global statistics of a whole volume (``global_normalization``);
* augmentation: RandomFlip/RandomRotate90 frequencies over many samples, and whether raw and
  label got the same geometry.

    python benchmarks/quality_parity.py --reference /work/refvenv/bin/python [--steps 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from quality import TASK_UNET
from workloads import DATA

SCORES = [0.50, 0.60, 0.60, 0.59, 0.58, 0.62, 0.61, 0.60, 0.60, 0.63]
PLATEAU = {"name": "ReduceLROnPlateau", "mode": "max", "factor": 0.5, "patience": 2}
SAMPLES = 4000  # augmentation draws per system

#: Runs in the reference's python: the same checks with its own components.
REFERENCE_SIDE = r"""
import json, sys
import numpy as np, torch, h5py
from pytorch3dunet.unet3d.model import get_model
from pytorch3dunet.unet3d.losses import get_loss_criterion
from pytorch3dunet.unet3d.metrics import get_evaluation_metric
from pytorch3dunet.unet3d.utils import create_optimizer, create_lr_scheduler
from pytorch3dunet.datasets.utils import calculate_stats
from pytorch3dunet.augment.transforms import Transformer
spec = json.loads(sys.argv[1])
torch.set_num_threads(2)
torch.manual_seed(spec["seed"])
model = get_model(dict(spec["model"]))
torch.save(model.state_dict(), spec["out"] + "/init.pt")
data = np.load(spec["out"] + "/batches.npz")
loss_fn = get_loss_criterion({"loss": {"name": "BCEDiceLoss"}, "device": "cpu"})
metric = get_evaluation_metric({"eval_metric": {"name": "DiceCoefficient"}})
opt = create_optimizer({"name": "Adam", "learning_rate": 1e-3, "weight_decay": 1e-5}, model)
model.train()
losses = []
for x, y in zip(data["x"], data["y"]):
    out, logits = model(torch.from_numpy(x), return_logits=True)
    loss = loss_fn(logits, torch.from_numpy(y))
    opt.zero_grad(); loss.backward(); opt.step()
    losses.append(float(loss))
model.eval()
with torch.no_grad():
    probs, _ = model(torch.from_numpy(data["vx"]), return_logits=True)
val = float(metric(probs, torch.from_numpy(data["vy"])))
lrs = {}
for mode in ("max", None):
    cfg = dict(spec["plateau"]); cfg.pop("mode")
    if mode: cfg["mode"] = mode
    p = torch.nn.Parameter(torch.zeros(1)); o = torch.optim.Adam([p], lr=1e-3)
    s = create_lr_scheduler(cfg, o); seq = []
    for score in spec["scores"]:
        s.step(score); seq.append(o.param_groups[0]["lr"])
    lrs[str(mode)] = seq
with h5py.File(spec["volume"], "r") as f:
    stats = {k: float(v) for k, v in calculate_stats(f["raw"][:]).items()}
t = Transformer({"raw": [{"name": "RandomFlip"}, {"name": "RandomRotate90"}],
                 "label": [{"name": "RandomFlip"}, {"name": "RandomRotate90"}]}, {})
raw_tf, label_tf = t.raw_transform(), t.label_transform()
probe = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
firsts, aligned = [], 0
for _ in range(spec["samples"]):
    r = raw_tf(probe.copy()); l = label_tf(probe.copy())
    aligned += bool(np.array_equal(r, l)); firsts.append(int(r.flat[0]))
print("RESULT " + json.dumps({"losses": losses, "val_dice": val, "lrs": lrs, "stats": stats,
      "firsts": firsts, "aligned": aligned}))
"""


def real_batches(steps: int) -> dict[str, np.ndarray]:
    """``steps`` training patches of nuclei3d_train_a and one validation patch of _b (standardized
    per patch, BlobsToMask targets), the same arrays for both systems."""
    patches = []
    for name, count in (("nuclei3d_train_a.h5", steps), ("nuclei3d_train_b.h5", 1)):
        with h5py.File(DATA / name, "r") as f:
            raw, label = f["raw"][:].astype(np.float64), f["label"][:]
        for i in range(count):
            z, y = (i * 13) % 68, (i * 29) % 36
            r = raw[z : z + 32, y : y + 64, 18:82]
            r = ((r - r.mean()) / max(r.std(), 1e-10)).astype(np.float32)
            t = (label[z : z + 32, y : y + 64, 18:82] > 0).astype(np.float32)
            patches.append((r[None, None], t[None, None]))
    train, val = patches[:steps], patches[steps]
    return {
        "x": np.stack([p[0] for p in train]),
        "y": np.stack([p[1] for p in train]),
        "vx": val[0],
        "vy": val[1],
    }


def ours(spec: dict[str, Any], reference_init: str, channels_last: bool) -> dict[str, Any]:
    import torch

    from unet_core import registry

    torch.manual_seed(spec["seed"])
    model = registry.create("models", spec["model"])
    init = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(torch.load(reference_init, weights_only=True))
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    data = np.load(Path(spec["out"]) / "batches.npz")
    loss_fn = registry.create("losses", {"name": "BCEDiceLoss"})
    metric = registry.create("metrics", {"name": "DiceCoefficient"})
    opt = registry.create(
        "optimizers",
        {"name": "Adam", "learning_rate": 1e-3, "weight_decay": 1e-5},
        params=model.parameters(),
    )
    model.train()
    losses = []
    for x, y in zip(data["x"], data["y"]):
        loss = loss_fn(model(torch.from_numpy(x).contiguous(memory_format=fmt)), torch.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    model.eval()
    with torch.no_grad():
        probs = model(torch.from_numpy(data["vx"]).contiguous(memory_format=fmt))
    return {"init": init, "losses": losses, "val_dice": float(metric(probs, data["vy"]))}


def our_schedule(mode: str | None, higher_is_better: bool = True) -> list[float]:
    import torch

    from unet_core import registry

    spec = dict(PLATEAU)
    if mode is None:
        spec.pop("mode")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([p], lr=1e-3)
    sched = registry.create("lr_schedulers", spec, optimizer=opt, higher_is_better=higher_is_better)
    lrs = []
    for score in SCORES:
        sched.step(score)
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def our_augmentation() -> tuple[list[int], int]:
    from unet_core.dataset_api import build_pipeline

    specs = [{"name": "RandomFlip"}, {"name": "RandomRotate90"}]
    raw, label = build_pipeline(specs), build_pipeline(copy.deepcopy(specs))
    probe = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    rng = np.random.default_rng(0)
    firsts, aligned = [], 0
    for seed in rng.integers(0, 2**62, SAMPLES):
        r, lab = raw(probe.copy(), int(seed)), label(probe.copy(), int(seed))
        aligned += bool(np.array_equal(r, lab))
        firsts.append(int(np.asarray(r).flat[0]))
    return firsts, aligned


def histogram(firsts: list[int]) -> list[float]:
    """Which corner of a 2x2x2 probe ends up first: uniform over 8 for fair flips/rotations."""
    counts = np.bincount(firsts, minlength=8)
    return [round(float(c) / len(firsts), 3) for c in counts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", required=True, help="python with pytorch3dunet==1.9.6")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    from unet_core.io import compute_stats

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        spec = {
            "seed": args.seed,
            "model": TASK_UNET,
            "out": tmp,
            "plateau": PLATEAU,
            "scores": SCORES,
            "volume": str(DATA / "nuclei3d_train_a.h5"),
            "samples": SAMPLES,
        }
        np.savez(Path(tmp) / "batches.npz", **real_batches(args.steps))
        done = subprocess.run(
            [args.reference, "-c", REFERENCE_SIDE, json.dumps(spec)], capture_output=True, text=True
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"the reference side failed:\n{done.stderr[-3000:]}")
        ref = json.loads(line[7:])
        init_path = str(Path(tmp) / "init.pt")
        reference_init = torch.load(init_path, weights_only=True)
        runs = {cl: ours(spec, init_path, cl) for cl in (False, True)}
    init_diff = max(
        float((runs[False]["init"][k] - v).abs().max()) for k, v in reference_init.items()
    )
    with h5py.File(DATA / "nuclei3d_train_a.h5", "r") as f:
        stats = compute_stats(f["raw"][:])
    firsts, aligned = our_augmentation()
    report = {
        "init: largest |ours - reference| after the same manual_seed": init_diff,
        "steps: reference losses": [round(v, 5) for v in ref["losses"]],
        "steps: ours losses (contiguous)": [round(v, 5) for v in runs[False]["losses"]],
        "steps: ours losses (channels_last_3d)": [round(v, 5) for v in runs[True]["losses"]],
        "val Dice after the steps, reference / ours / ours channels_last": [
            round(ref["val_dice"], 5),
            round(runs[False]["val_dice"], 5),
            round(runs[True]["val_dice"], 5),
        ],
        "ReduceLROnPlateau mode max, lr per validation: reference": ref["lrs"]["max"],
        "ReduceLROnPlateau mode max: ours": our_schedule("max"),
        "ReduceLROnPlateau mode omitted, Dice metric: reference (torch's 'min')": ref["lrs"][
            "None"
        ],
        "ReduceLROnPlateau mode omitted, Dice metric: ours (follows the metric)": our_schedule(
            None
        ),
        "global stats: reference": ref["stats"],
        "global stats: ours": {k: float(stats[k]) for k in ("pmin", "pmax", "mean", "std")},
        "augmentation: first-corner frequencies, reference": histogram(ref["firsts"]),
        "augmentation: first-corner frequencies, ours": histogram(firsts),
        "augmentation: raw and label aligned (of samples), reference / ours": [
            ref["aligned"],
            aligned,
            SAMPLES,
        ],
    }
    for key, value in report.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
