"""Whole training runs fed the same patches in the same order: ours vs pytorch-3dunet (issue 19).

``quality.py`` trains each system with its own data order and augmentation draws, so two runs
of one seed see different patches; ``quality_parity.py`` compares the parts over a few steps.
This script closes the gap between the two: pytorch-3dunet's ``train3dunet`` runs the task's
config unchanged while every training batch its loader produces (after its own shuffling,
normalisation and augmentation) is recorded; then our trainer (``unet_core.training``: the
same config, the same ``manual_seed``, its own model, loss, optimizer, scheduler, validation
and best-checkpoint rule) trains on exactly those batches in the same order. If the two
validation curves agree, training itself is the same and any difference between ordinary runs
comes from which patches and augmentations each system draws.

    python benchmarks/quality_replay.py --reference /work/refvenv/bin/python --seeds 0,1,2

Prints one JSON line per seed (both validation histories, the largest difference between
them, both best scores, and the held-back Dice/F1 of both best checkpoints predicted the same
way) and a summary. ``--channels-last`` trains ours in its CPU default memory format instead
of the reference's contiguous one (float rounding differs, so curves drift apart slowly).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from quality import REFERENCE_MAIN, TASKS, predict, score_file, train_reference

#: train3dunet's main(), recording each training batch and each validation score it computes.
RECORDER = r"""
import atexit, json, os, sys
import numpy as np
from pytorch3dunet.unet3d import trainer as T
_batches, _scores, _state = [], [], {"val": False}
_split = T._split_and_move_to_device
def _recording_split(t, device):
    x, y = _split(t, device)
    if not _state["val"]:
        _batches.append((x.detach().cpu().numpy().copy(), y.detach().cpu().numpy().copy()))
    return x, y
T._split_and_move_to_device = _recording_split
_validate = T.UNetTrainer.validate
def _recording_validate(self):
    _state["val"] = True
    try:
        score = _validate(self)
    finally:
        _state["val"] = False
    _scores.append(float(score))
    return score
T.UNetTrainer.validate = _recording_validate
def _save():
    out = os.environ["UNET_REPLAY_OUT"]
    np.savez(out + "/batches.npz", x=np.stack([b[0] for b in _batches]),
             y=np.stack([b[1] for b in _batches]))
    with open(out + "/scores.json", "w") as f:
        json.dump(_scores, f)
atexit.register(_save)
"""
RECORDING_MAIN = REFERENCE_MAIN.replace(
    "from pytorch3dunet.train import main", RECORDER + "from pytorch3dunet.train import main"
)


def record_reference(cfg: dict, folder: Path, seed: int, args: argparse.Namespace) -> dict:
    """Run the reference on ``cfg`` and keep the batches it trained on (``batches.npz``)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {"UNET_REPLAY_OUT": str(folder)}
    trained = train_reference(cfg, folder / "checkpoints", seed, args, RECORDING_MAIN, env)
    scores = json.loads((folder / "scores.json").read_text())
    return trained | {"val_history": scores, "batches": folder / "batches.npz"}


def train_ours_on(cfg: dict, folder: Path, seed: int, batches: Path, channels_last: bool) -> dict:
    """Our trainer on the recorded batches, in their order (one epoch of them)."""
    import torch

    from unet_core.config import config_from_dict
    from unet_core.training.run import build_trainer

    cfg = json.loads(json.dumps(cfg))
    cfg["manual_seed"] = seed
    cfg["trainer"].update(
        checkpoint_dir=str(folder / "checkpoints"),
        amp="none",
        channels_last=channels_last,
        progress="none",
        log_images=False,
    )
    data = np.load(batches)
    replay = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in zip(data["x"], data["y"])]
    start = time.perf_counter()
    trainer = build_trainer(config_from_dict(cfg))
    trainer.parts.loaders["train"] = replay  # type: ignore[assignment]
    trainer.fit()
    return {
        "train_s": round(time.perf_counter() - start, 1),
        "best_val_dice": float(trainer.best_eval_score),
        "val_history": [score for _, score, _ in trainer.val_history],
        "checkpoint": folder / "checkpoints" / "best_checkpoint.pytorch",
        "batches_replayed": len(replay),
    }


def run_seed(seed: int, args: argparse.Namespace, out: Path) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    make, score = TASKS["nuclei"]
    base = out / f"seed{seed}"
    base.mkdir(parents=True, exist_ok=True)
    cfg, test = make(base, (args.iterations, args.validations))
    ref = record_reference(cfg, base / "reference", seed, args)
    ours = train_ours_on(cfg, base / "ours", seed, ref.pop("batches"), args.channels_last)
    result: dict = {"seed": seed, "iterations": args.iterations}
    for name, trained in (("reference", ref), ("ours", ours)):
        ckpt = trained.pop("checkpoint")
        path = predict(cfg, ckpt, test["test"], base / name / "predictions", test["post"], "none")
        held = score_file(score, path, test["test"])
        result[name] = {
            **trained,
            "val_history": [round(s, 5) for s in trained["val_history"]],
            "held_back_dice": held["dice"],
            "held_back_f1@0.5": held["instance_f1@0.5"],
        }
    pairs = zip(ref["val_history"], ours["val_history"])
    result["max_val_difference"] = max((abs(a - b) for a, b in pairs), default=float("nan"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", required=True, help="python with pytorch3dunet==1.9.6")
    parser.add_argument("--seeds", default="0", help="comma-separated manual_seed values")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--validations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--channels-last", action="store_true", help="ours in channels_last_3d")
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="unet-replay-"))
    results = []
    for seed in (int(s) for s in args.seeds.split(",") if s.strip()):
        results.append(run_seed(seed, args, out))
        print(json.dumps(results[-1]), flush=True)
    for key in ("best_val_dice", "held_back_dice", "held_back_f1@0.5"):
        cells = []
        for system in ("ours", "reference"):
            values = [r[system][key] for r in results]
            cells.append(f"{system} {statistics.mean(values):.4f}")
        print(f"{key:18s} " + " / ".join(cells))
    print(f"largest validation difference: {max(r['max_val_difference'] for r in results):.2e}")


if __name__ == "__main__":
    main()
