"""Forward and forward+backward time and peak memory of every built-in model.

Per model (f_maps 32, batch 1, one input and output channel, 64^3 patch; 2D models 256^2):
eager vs channels_last(_3d) vs torch.compile. Peak memory is torch.cuda.max_memory_allocated on
GPU and the RSS growth during the run (sampled) on CPU; the "est" columns are what
``unet models summary`` predicts for the same patch, to check that estimate. Times are medians.
Absolute numbers drift on shared machines: compare rows of one run.

    python benchmarks/models.py --quick            # CPU: eager and channels_last, 1 rep
    python benchmarks/models.py --device cuda      # all models, all modes
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from unet_core import registry
from unet_core.cli.models import describe_model

NAMES = ["UNet3D", "ResidualUNet3D", "ResidualUNetSE3D", "UNet2D", "ResidualUNet2D"]
MiB = 2**20


class RssPeak:
    """Peak resident memory growth of this process while the block runs (CPU runs)."""

    def __init__(self) -> None:
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def __enter__(self) -> RssPeak:
        self.base = self._rss()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join()
        self.peak = max(self.peak, self._rss() - self.base)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any], device: torch.device, warmup: int, reps: int
) -> tuple[float, float, int]:
    """(first call s, median s, peak bytes) of ``fn``.

    The first call includes any compile and cuDNN autotuning; on GPU the peak is taken over the
    timed reps only, so cuDNN autotuning workspaces do not count as the model's memory.
    """
    with RssPeak() as rss:  # CPU: RSS growth over all calls (no autotuning there)
        t0 = time.perf_counter()
        fn()
        sync(device)
        first = time.perf_counter() - t0
        for _ in range(warmup - 1):
            fn()
        sync(device)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        times = []
        for _ in range(reps):
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times.append(time.perf_counter() - t)
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else rss.peak
    return first, statistics.median(times), peak


def run_case(
    name: str, mode: str, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    spec = {"name": name, "in_channels": 1, "out_channels": 1, "f_maps": args.f_maps}
    torch._dynamo.reset()  # every model shares AbstractUNet.forward: keep its cache per case
    torch.manual_seed(0)
    model = registry.create("models", spec).to(device)
    dims = model.spatial_dims
    shape = (1, 1, *([args.patch2d] * 2 if dims == 2 else [args.patch3d] * 3))
    x = torch.randn(shape, device=device)
    fmt = torch.channels_last_3d if dims == 3 else torch.channels_last
    if mode == "channels_last":
        model = model.to(memory_format=fmt)
        x = x.contiguous(memory_format=fmt)
    net: Any = torch.compile(model) if mode == "compiled" else model

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    def train_step() -> None:
        net(x).float().mean().backward()
        model.zero_grad(set_to_none=True)

    model.eval()
    with torch.no_grad():
        reference = model(x) if mode != "eager" else None
    f_first, f_med, f_peak = timed(forward, device, args.warmup, args.reps)
    diff = float((forward() - reference).abs().max()) if reference is not None else 0.0
    model.train()
    b_first, b_med, b_peak = timed(train_step, device, args.warmup, args.reps)
    est = describe_model(spec, list(shape[2:]))
    return {
        "model": name,
        "mode": mode,
        "fwd_ms": f_med * 1e3,
        "train_ms": b_med * 1e3,
        "fwd_MiB": f_peak / MiB,
        "train_MiB": b_peak / MiB,
        "est_fwd_MiB": est["inference_bytes"] / MiB,
        "est_train_MiB": (est["training_bytes"] + est["parameter_bytes"]) / MiB,
        "first_s": max(f_first, b_first),
        "max_diff": diff,
    }


COLUMNS = [
    ("model", "{:<17}"),
    ("mode", "{:<14}"),
    ("fwd_ms", "{:>9.1f}"),
    ("train_ms", "{:>9.1f}"),
    ("fwd_MiB", "{:>8.0f}"),
    ("est_fwd_MiB", "{:>8.0f}"),
    ("train_MiB", "{:>9.0f}"),
    ("est_train_MiB", "{:>9.0f}"),
    ("first_s", "{:>8.1f}"),
    ("max_diff", "{:>9.1e}"),
]
HEADERS = [
    "model",
    "mode",
    "fwd ms",
    "fwd+bwd",
    "fwd MiB",
    "est",
    "train MiB",
    "est",
    "1st s",
    "|diff|",
]


def print_row(values: list[str]) -> None:
    print(" ".join(values), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", default=NAMES, choices=NAMES)
    parser.add_argument("--modes", nargs="+", default=["eager", "channels_last", "compiled"],
                        choices=["eager", "channels_last", "compiled"])  # fmt: skip
    parser.add_argument("--f-maps", type=int, default=32)
    parser.add_argument("--patch3d", type=int, default=64)
    parser.add_argument("--patch2d", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--quick", action="store_true",
                        help="1 warm-up, 1 rep, no compile unless --modes names it")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.warmup, args.reps = 1, 1
        if "compiled" in args.modes and parser.get_default("modes") == args.modes:
            args.modes = ["eager", "channels_last"]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True  # fixed patch sizes: let cuDNN pick its algorithms
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{args.threads}"
    print(f"# {where}, torch {torch.__version__}, f_maps {args.f_maps}, 3D {args.patch3d}^3, "
          f"2D {args.patch2d}^2, batch 1, median of {args.reps}")  # fmt: skip
    print("# peak = max_memory_allocated (GPU) or RSS growth (CPU); est = `unet models summary`;")
    print("# |diff| = max abs difference of eval outputs vs eager; 1st s = first call (compile)")
    widths = [len(fmt.format(0 if "f}" in fmt or "e}" in fmt else "")) for _, fmt in COLUMNS]
    print_row(
        [h.rjust(w) if i > 1 else h.ljust(w) for i, (h, w) in enumerate(zip(HEADERS, widths))]
    )
    for name in args.models:
        for mode in args.modes:
            try:
                row = run_case(name, mode, args, device)
            except Exception as exc:  # noqa: BLE001 - a failing case is a result to print
                print(f"{name:<17} {mode:<14} FAILED: {type(exc).__name__}: {exc}".splitlines()[0])
                continue
            print_row([fmt.format(row[key]) for key, fmt in COLUMNS])
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
