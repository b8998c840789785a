"""Per-forward time of each inference backend on the standard network, side by side.

The network of WORKLOADS.md (UNet3D f_maps 32, gcr, 4 levels; random weights: speed does not
depend on them), one tile of ``--edge``^3 (64), ``--threads`` threads (2), best of
``--reps`` (3) after a warm-up, in one process, through the same forward the predictors use
(``backend_forward`` + ``PatchForward``), in alternating rounds after every conversion:

* torch fp32 (contiguous), torch fp32 channels_last_3d (the CPU default), torch bf16 autocast
* onnxruntime fp32, openvino fp32, openvino bf16 (skipped when a package is missing)

Each line also gives the largest probability difference to torch fp32 on the same tile and,
for the converted backends, the conversion time (first run) or "cached". The converted models
go to a temporary cache unless ``--cache`` names one.

    python benchmarks/backends.py [--edge 64] [--threads 2] [--reps 3] [--cache DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import tempfile
import time
from typing import Any

from workloads import STANDARD_UNET as MODEL

#: (label, backend section or None for torch, predictor keys for the torch path)
VARIANTS: list[tuple[str, dict[str, Any] | None, dict[str, Any]]] = [
    ("torch fp32", None, {"channels_last": False}),
    ("torch fp32 channels_last_3d", None, {"channels_last": True}),
    ("torch bf16 autocast", None, {"amp": "bf16"}),
    ("onnxruntime fp32", {"name": "onnxruntime", "precision": "f32"}, {}),
    ("openvino fp32", {"name": "openvino", "precision": "f32"}, {}),
    ("openvino bf16", {"name": "openvino", "precision": "bf16"}, {}),
]
PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edge", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cache", default=None, help="converted-model cache (default: a temp)")
    args = parser.parse_args()
    if args.cache:
        run(args, args.cache)
        return
    with tempfile.TemporaryDirectory() as cache:
        run(args, cache)


def run(args: argparse.Namespace, cache: str) -> None:
    """Prepare every variant (converting where needed), then time them in alternating rounds,
    so that a busy shared machine slows all of them alike; the fastest round counts."""
    import torch

    from unet_core import registry
    from unet_core.prediction_api import PatchForward, backend_forward

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = registry.create("models", MODEL).eval()
    x = torch.randn(1, 1, args.edge, args.edge, args.edge)
    device = torch.device("cpu")
    print(f"backends: UNet3D f_maps 32, one {args.edge}^3 tile, {args.threads} threads, "
          f"best of {args.reps} alternating rounds", flush=True)  # fmt: skip
    forwards: dict[str, Any] = {}
    notes: dict[str, str] = {}
    outputs: dict[str, Any] = {}
    for label, backend, keys in VARIANTS:
        if backend is not None and importlib.util.find_spec(PACKAGES[backend["name"]]) is None:
            print(f"  {label:28s} skipped ({PACKAGES[backend['name']]} is not installed)")
            continue
        section = {**backend, "cache_dir": cache} if backend is not None else None
        net = backend_forward(section, model, device, model_section=MODEL)
        amp, layout = keys.get("amp", "none"), keys.get("channels_last", False)
        forwards[label] = PatchForward(model, device, amp=amp, channels_last=layout, net=net)
        start = time.perf_counter()
        outputs[label] = forwards[label](x)  # converts (or loads the cached conversion), warms up
        if backend is not None:
            notes[label] = (
                f", first call (conversion or cache load) {time.perf_counter() - start:.1f} s"
            )
    best = {label: float("inf") for label in forwards}
    for _ in range(args.reps):
        for label, forward in forwards.items():
            start = time.perf_counter()
            forward(x)
            best[label] = min(best[label], time.perf_counter() - start)
    baseline = outputs[VARIANTS[0][0]]
    for label, seconds in best.items():
        diff = float(abs(outputs[label] - baseline).max())
        ratio = best[VARIANTS[0][0]] / seconds
        print(f"  {label:28s} {seconds:.3f} s/forward ({ratio:.2f}x torch fp32)  "
              f"max |p - p_torch_fp32| {diff:.4f}{notes.get(label, '')}", flush=True)  # fmt: skip
    print(f"(cache {cache}; pid {os.getpid()})", flush=True)


if __name__ == "__main__":
    main()
