"""Per-forward time of each inference backend on the standard network, side by side.

The network of WORKLOADS.md (UNet3D f_maps 32, gcr, 4 levels; random weights: speed does not
depend on them), one tile of ``--edge``^3 (64), ``--threads`` threads (2), best of
``--reps`` (3) after a warm-up, in one process, through the same forward the predictors use
(``backend_forward`` + ``PatchForward``):

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
    import torch

    from unet_core import registry
    from unet_core.prediction_api import PatchForward, backend_forward

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = registry.create("models", MODEL).eval()
    x = torch.randn(1, 1, args.edge, args.edge, args.edge)
    device = torch.device("cpu")
    baseline = None
    print(f"backends: UNet3D f_maps 32, one {args.edge}^3 tile, {args.threads} threads, "
          f"best of {args.reps}", flush=True)  # fmt: skip
    for label, backend, keys in VARIANTS:
        if backend is not None and importlib.util.find_spec(PACKAGES[backend["name"]]) is None:
            print(f"  {label:28s} skipped ({PACKAGES[backend['name']]} is not installed)")
            continue
        section = {**backend, "cache_dir": cache} if backend is not None else None
        net = backend_forward(section, model, device, model_section=MODEL)
        forward = PatchForward(model, device, amp=keys.get("amp", "none"),
                               channels_last=keys.get("channels_last", False), net=net)  # fmt: skip
        start = time.perf_counter()
        first = forward(x)  # converts (or loads the cached conversion) and warms up
        prepare = time.perf_counter() - start
        best = float("inf")
        for _ in range(args.reps):
            start = time.perf_counter()
            y = forward(x)
            best = min(best, time.perf_counter() - start)
        baseline = y if baseline is None else baseline
        diff = float(abs(y - baseline).max())
        extra = f", first call {prepare:.1f} s" if backend is not None else ""
        print(f"  {label:28s} {best:.3f} s/forward  max |p - p_torch_fp32| {diff:.4f}{extra}",
              flush=True)  # fmt: skip
        del first
    print(f"(cache {cache}; pid {os.getpid()})", flush=True)


if __name__ == "__main__":
    main()
