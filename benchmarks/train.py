"""Training throughput: workloads T1 (bare step) and T2 (trainer) of benchmarks/WORKLOADS.md.

    python benchmarks/train.py                       # T1 + T2, default precision (auto), 2 threads
    python benchmarks/train.py --t2-iterations 10 --channels-last on --amp bf16 --compile
    python benchmarks/train.py --reference-python /tmp/refvenv/bin/python   # + the reference T2

Each workload runs in its own process (so peak RSS is its own) and prints one JSON line; the
summary gives seconds per iteration, the trainer's ratio to the bare loop of the same model and
options (framework overhead), the extra cost of one validation (8 patches + TensorBoard +
checkpoint), and peak RSS. Absolute times drift on shared machines: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from workloads import DATA, ROOT
from workloads import STANDARD_UNET as MODEL

from unet_core.config import phase_section
from unet_core.hooks import hookimpl

OPTIMIZER = {"name": "Adam", "learning_rate": 2e-4, "weight_decay": 1e-5}


def peak_rss_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"peak_rss_mb": round(own, 1), "peak_rss_workers_mb": round(children, 1)}


# -- T1: the bare loop --------------------------------------------------------------------------
def run_t1(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from unet_core import registry
    from unet_core.engine.amp import Precision, default_channels_last, memory_format

    torch.manual_seed(0)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = registry.create("models", dict(MODEL, f_maps=args.f_maps)).to(device)
    channels_last = {"on": True, "off": False}.get(args.channels_last)
    if channels_last is None:
        channels_last = default_channels_last(3, device.type)
    fmt = memory_format(3, channels_last)
    if fmt is not None:
        model = model.to(memory_format=fmt)
    loss_fn = registry.create("losses", {"name": "BCEDiceLoss"}).to(device)
    optimizer = registry.create("optimizers", OPTIMIZER, params=model.parameters())
    precision = Precision(args.amp, device)
    forward = torch.compile(model) if args.compile else model
    size = args.patch
    x = torch.rand(1, 1, size, size, size, device=device)
    if fmt is not None:
        x = x.contiguous(memory_format=fmt)
    y = (torch.rand(1, 1, size, size, size, device=device) > 0.7).float()
    model.train()
    times = []
    for _ in range(args.t1_iterations):
        sync()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = forward(x)
        loss = loss_fn(logits.float(), y)
        precision.backward_and_step(loss, optimizer)
        float(loss)
        sync()
        times.append(time.perf_counter() - t0)
    steady = times[2:] or times
    return {
        "workload": "T1",
        "s_per_it": statistics.median(steady),
        "times": times,
        **peak_rss_mb(),
    }


# -- T2: the trainer ----------------------------------------------------------------------------
def t2_config(args: argparse.Namespace, checkpoint_dir: str) -> dict[str, Any]:
    size = [args.patch] * 3
    stride = [args.patch // 2] * 3
    val_at = args.t2_iterations - 1
    return {
        "model": dict(MODEL, f_maps=args.f_maps),
        "loss": {"name": "BCEDiceLoss"},
        "eval_metric": {"name": "DiceCoefficient"},
        "optimizer": OPTIMIZER,
        "device": args.device,
        "manual_seed": 0,
        "trainer": {
            "checkpoint_dir": checkpoint_dir,
            "max_num_epochs": 100,
            "max_num_iterations": args.t2_iterations,
            "validate_after_iters": val_at,
            "log_after_iters": val_at,
            "amp": args.amp,
            "channels_last": {"on": True, "off": False}.get(args.channels_last),
            "compile": args.compile,
            "progress": "none",
        },
        "loaders": {
            "dataset": "StandardHDF5Dataset",
            "batch_size": 1,
            "num_workers": 1,
            "global_normalization": True,
            "train": phase_section(
                [Path(args.data) / "nuclei3d_train_a.h5"],
                size,
                stride,
                raw=[
                    {"name": "Standardize"},
                    {"name": "RandomFlip"},
                    {"name": "RandomRotate90"},
                    {"name": "ToTensor", "expand_dims": True},
                ],
                label=[
                    {"name": "RandomFlip"},
                    {"name": "RandomRotate90"},
                    {"name": "BlobsToMask"},
                    {"name": "ToTensor", "expand_dims": True},
                ],
            ),
            "val": phase_section(
                [Path(args.data) / "nuclei3d_train_b.h5"],
                size,
                label=[{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}],
            ),
        },
    }


class Clock:
    """A hook plugin timing each iteration and the validation."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.validation: list[float] = []

    @hookimpl
    def unet_train_start(self, trainer: Any, config: Any) -> None:
        self.stamps.append(time.perf_counter())

    @hookimpl
    def unet_after_iteration(self, trainer: Any, iteration: int, loss: float) -> None:
        self.stamps.append(time.perf_counter())

    @hookimpl
    def unet_after_validation(
        self, trainer: Any, iteration: int, score: float, loss: float
    ) -> None:
        self.validation.append(time.perf_counter())


def run_t2(args: argparse.Namespace) -> dict[str, Any]:
    from unet_core.config import config_from_dict
    from unet_core.hooks import plugin_manager
    from unet_core.training.run import train

    clock = Clock()
    plugin_manager().register(clock, name="benchmark-clock")
    with tempfile.TemporaryDirectory() as tmp:
        config = config_from_dict(t2_config(args, tmp))
        t0 = time.perf_counter()
        trainer = train(config)
        total = time.perf_counter() - t0
    return summarize_t2(clock.stamps, args.t2_iterations - 1, total, trainer.val_history[0][1])


def summarize_t2(stamps: list[float], val_at: int, total: float, score: float) -> dict[str, Any]:
    """Steady = median interval of iterations 3..7; validation = its interval minus steady."""
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]  # intervals[i] ends at iteration i+1
    steady_window = [intervals[i - 1] for i in range(3, min(8, val_at)) if i - 1 < len(intervals)]
    steady = statistics.median(steady_window)
    # the validation runs after iteration val_at, so it lands in the interval ending at val_at+1
    with_val = intervals[val_at] if val_at < len(intervals) else float("nan")
    return {
        "workload": "T2",
        "s_per_it": steady,
        "validation_s": with_val - steady,
        "first_iteration_s": intervals[0] if intervals else None,
        "total_s": total,
        "val_score": score,
        "intervals": intervals,
        **peak_rss_mb(),
    }


# -- the reference's T2 (optional, its own venv) ------------------------------------------------
REFERENCE_SCRIPT = r"""
import json, statistics, sys, time, resource
import torch
torch.set_num_threads(int(sys.argv[2]))
from pytorch3dunet.unet3d.trainer import create_trainer
cfg = json.loads(sys.argv[1])
trainer = create_trainer(cfg)
stamps = [time.perf_counter()]
step = trainer.optimizer.step
def timed(*a, **k):
    out = step(*a, **k)
    stamps.append(time.perf_counter())
    return out
trainer.optimizer.step = timed
validate = trainer.validate
scores = []
def timed_val():
    t0 = time.perf_counter(); s = validate(); scores.append((s, time.perf_counter() - t0)); return s
trainer.validate = timed_val
t0 = time.perf_counter()
trainer.fit()
print("RESULT " + json.dumps({"stamps": stamps, "total": time.perf_counter() - t0,
      "score": float(scores[0][0]), "validate_s": scores[0][1],
      "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_reference(args: argparse.Namespace) -> dict[str, Any]:
    """The same T2 through pytorch-3dunet's own trainer (keys as its configs spell them)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = t2_config(args, tmp)
        cfg["trainer"] = {
            "checkpoint_dir": tmp,
            "max_num_epochs": 100,
            # the reference runs one extra step (its §12.24), so ask for one fewer
            "max_num_iterations": args.t2_iterations - 1,
            "validate_after_iters": args.t2_iterations - 1,
            "log_after_iters": args.t2_iterations - 1,
        }
        cfg["optimizer"] = {"learning_rate": 2e-4, "weight_decay": 1e-5}
        cfg["lr_scheduler"] = None
        cfg["eval_metric"] = {"name": "DiceCoefficient"}
        cfg["loss"] = {"name": "BCEDiceLoss"}
        out = subprocess.run(
            [args.reference_python, "-c", REFERENCE_SCRIPT, json.dumps(cfg), str(args.threads)],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"reference run failed:\n{out.stderr[-3000:]}")
    res = json.loads(line[7:])
    stamps = res["stamps"]
    summary = summarize_t2(stamps, args.t2_iterations - 1, res["total"], res["score"])
    summary.update(workload="T2-reference", peak_rss_mb=round(res["rss"], 1))
    summary.pop("peak_rss_workers_mb", None)
    return summary


# -- driver ---------------------------------------------------------------------------------------
def child(args: argparse.Namespace) -> None:
    from unet_core.engine.allocator import keep_freed_memory

    keep_freed_memory()  # as `unet train` does (UNET_KEEP_FREED_MEMORY=0: glibc's defaults)
    import torch

    torch.set_num_threads(args.threads)
    result = run_t1(args) if args.workload == "T1" else run_t2(args)
    print("RESULT " + json.dumps(result))


def spawn(args: argparse.Namespace, workload: str) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--workload", workload, *forwarded(args)]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{workload} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return json.loads(line[7:])


def forwarded(args: argparse.Namespace) -> list[str]:
    out = [
        f"--threads={args.threads}",
        f"--device={args.device}",
        f"--f-maps={args.f_maps}",
        f"--patch={args.patch}",
        f"--t1-iterations={args.t1_iterations}",
        f"--t2-iterations={args.t2_iterations}",
        f"--amp={args.amp}",
        f"--data={args.data}",
        f"--channels-last={args.channels_last}",
    ]
    out += ["--compile"] if args.compile else []
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", choices=["T1", "T2"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--f-maps", type=int, default=32)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--t1-iterations", type=int, default=8)
    parser.add_argument("--t2-iterations", type=int, default=10, help=">= 9 (validation after n-1)")
    parser.add_argument(
        "--channels-last",
        choices=["auto", "on", "off"],
        default="auto",
        help="memory format; auto: the trainer's default (on for 3D on a CPU)",
    )
    parser.add_argument(
        "--amp",
        choices=["auto", "none", "bf16", "fp16"],
        default="auto",
        help="precision (default: auto, the trainer's default: bf16 where native)",
    )
    parser.add_argument("--data", default=str(DATA), help="folder with nuclei3d_train_[ab].h5")
    parser.add_argument("--skip-t2", action="store_true", help="only the bare loop")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--reference-python", help="python of a venv with pytorch3dunet==1.9.6")
    args = parser.parse_args()
    args.data = str(Path(args.data).resolve())
    if args.workload:
        child(args)
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    if args.skip_t2:
        t1 = spawn(args, "T1")
        print(json.dumps({k: v for k, v in t1.items() if k != "times"}))
        return
    results = [spawn(args, "T1"), spawn(args, "T2")]
    if args.reference_python:
        results.append(run_reference(args))
    results.append(spawn(args, "T1"))  # bracket T2 with two bare runs: load drifts
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k not in ("times", "intervals")}))
    bare = statistics.mean([results[0]["s_per_it"], results[-1]["s_per_it"]])
    t2 = results[1]
    print(
        f"\nT1 bare step {bare:.3f} s/it | T2 trainer {t2['s_per_it']:.3f} s/it "
        f"(ratio {t2['s_per_it'] / bare:.3f}, "
        f"overhead {100 * (t2['s_per_it'] / bare - 1):+.1f} %) | "
        f"validation +{t2['validation_s']:.2f} s | val Dice {t2['val_score']:.3f} | "
        f"peak RSS {t2['peak_rss_mb']:.0f} MB (+ workers {t2['peak_rss_workers_mb']:.0f} MB)"
    )
    if args.reference_python:
        ref = results[2]
        print(
            f"reference T2 {ref['s_per_it']:.3f} s/it, validation +{ref['validation_s']:.2f} s, "
            f"val Dice {ref['val_score']:.3f}, peak RSS {ref['peak_rss_mb']:.0f} MB | "
            f"ours/ref iterations/s: {ref['s_per_it'] / t2['s_per_it']:.2f}x"
        )


if __name__ == "__main__":
    main()
