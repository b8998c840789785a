"""Patch-voxels per second of fast-mode prediction on one GPU (issue 17's GPU items).

Issue 17 aims at >= 100 M patch-voxels/s for the standard UNet3D (f_maps 32, gcr, 4 levels,
random weights) on one H100 in bf16. This script measures, on ``--device`` (cuda by default
when there is one):

* ``forward`` rows: the bare batched forward under inference_mode + bf16 autocast +
  channels_last_3d, eager, ``torch.compile`` and ``torch.compile(mode="reduce-overhead")``
  (CUDA graphs), for each tile edge and batch; ms per batch, M patch-voxels/s, peak memory;
* ``predict`` rows: the whole fast-mode pipeline on a generated ``--volume``^3 volume (read
  ahead by a thread, forward, halo crop, gaussian blending in host memory), with the next batch
  submitted before the host blends the last one (``pipelined``, the default on a GPU) and
  without (``sequential``): M volume voxels/s and M patch-voxels/s (computed voxels, i.e.
  volume x redundancy), and the largest difference between the two outputs (0 expected).

Every figure is the best of ``--repeat`` runs after one warm-up (which also compiles).
``--smoke`` shrinks everything (a 2-level f_maps 4 net, 16^3 tiles, a 40^3 volume) so that the
script itself can be checked on a CPU (tests/test_benchmarks.py).

    python benchmarks/gpu_throughput.py [--device cuda] [--tiles 64,96,128] [--batch 1,2,4,8]
        [--variants eager,compile,graphs] [--volume 384] [--repeat 3] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from workloads import STANDARD_UNET

SMOKE_UNET = {**STANDARD_UNET, "f_maps": 4, "num_groups": 2, "num_levels": 2}


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], Any], device: Any, repeat: int) -> float:
    """Best wall time of ``fn`` over ``repeat`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _peak_mib(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _net(model: Any, variant: str) -> Any:
    import torch

    if variant == "eager":
        return model
    if variant == "compile":
        return torch.compile(model)
    if variant == "graphs":
        return torch.compile(model, mode="reduce-overhead")
    raise SystemExit(f"unknown variant {variant!r}: eager, compile, graphs")


def forward_rows(model: Any, device: Any, args: argparse.Namespace) -> None:
    import torch

    for variant in args.variants.split(","):
        net = _net(model, variant)
        for tile in (int(t) for t in args.tiles.split(",")):
            for batch in (int(b) for b in args.batch.split(",")):
                x = torch.randn(batch, 1, tile, tile, tile, device=device).to(
                    memory_format=torch.channels_last_3d
                )
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)

                def run(net: Any = net, x: Any = x) -> Any:
                    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16):
                        return net(x)

                row = {"row": "forward", "variant": variant, "tile": tile, "batch": batch}
                try:
                    seconds = best_seconds(run, device, args.repeat)
                except torch.OutOfMemoryError:
                    torch.cuda.empty_cache()
                    print(json.dumps(row | {"error": "out of memory"}), flush=True)
                    continue
                row |= {
                    "ms_per_batch": round(seconds * 1e3, 3),
                    "M_patch_voxels_per_s": round(batch * tile**3 / seconds / 1e6, 2),
                    "peak_mib": _peak_mib(device),
                }
                print(json.dumps(row), flush=True)


def predict_rows(model: Any, device: Any, args: argparse.Namespace) -> None:
    """Fast mode's pieces (unet_core.prediction_api) on a generated volume, pipelined or not."""
    from unet_core.io.volume import Volume
    from unet_core.prediction_api import (
        PatchForward,
        array_batches,
        blend_in_memory,
        forward_patches,
        patch_grid,
        plan_window,
        prefetched,
        redundancy,
    )

    rng = np.random.default_rng(0)
    edge = args.volume
    data = rng.normal(size=(edge, edge, edge)).astype(np.float32)
    volume = Volume([data], what="the generated volume", path="<generated>")
    shape = volume.spatial_shape
    tile = int(args.tiles.split(",")[-1])
    batch = int(args.batch.split(",")[-1])
    window = plan_window(
        shape, device.type, mode="fast", patch=(tile,) * 3, batch_size=batch, halo=(0, 0, 0)
    )
    indices = patch_grid(shape, window.patch, window.stride)
    factor = redundancy(indices, shape, window.halo)
    outputs: dict[str, np.ndarray] = {}
    for variant in args.variants.split(","):
        forward = PatchForward(
            model, device, amp="bf16", channels_last=True, compile=variant != "eager"
        )
        if variant == "graphs":  # PatchForward compiles in the default mode; swap the graph in
            forward._compiled = _net(forward.model, "graphs")
        for pipelined in (True, False):
            forward.asynchronous = pipelined

            def run(forward: Any = forward) -> np.ndarray:
                batches = prefetched(array_batches(volume, indices, window.halo, window.batch_size))
                patches = forward_patches(forward, batches, window.halo, out_channels=1)
                return blend_in_memory(patches, 1, shape, window.blending)

            seconds = best_seconds(run, device, args.repeat)
            key = f"{variant}-{'pipelined' if pipelined else 'sequential'}"
            outputs[key] = run()
            print(
                json.dumps(
                    {
                        "row": "predict",
                        "variant": variant,
                        "pipelined": pipelined,
                        "volume": list(shape),
                        "tile": list(window.patch),
                        "batch": window.batch_size,
                        "tiles": len(indices),
                        "redundancy": round(factor, 3),
                        "seconds": round(seconds, 3),
                        "M_voxels_per_s": round(float(np.prod(shape)) / seconds / 1e6, 2),
                        "M_patch_voxels_per_s": round(
                            factor * float(np.prod(shape)) / seconds / 1e6, 2
                        ),
                    }
                ),
                flush=True,
            )
        pair = outputs[f"{variant}-pipelined"], outputs[f"{variant}-sequential"]
        print(
            json.dumps(
                {
                    "row": "agreement",
                    "variant": variant,
                    "max_abs_difference": float(np.abs(pair[0] - pair[1]).max()),
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    parser.add_argument("--tiles", default="64,96,128")
    parser.add_argument("--batch", default="1,2,4,8")
    parser.add_argument("--variants", default="eager,compile,graphs")
    parser.add_argument("--volume", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check the script")
    parser.add_argument("--skip-forward", action="store_true")
    args = parser.parse_args()
    import torch

    from unet_core import registry

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    spec = dict(STANDARD_UNET)
    if args.smoke:
        spec = dict(SMOKE_UNET)
        args.tiles, args.batch, args.volume, args.repeat = "16", "2", 40, 1
    torch.manual_seed(0)
    model = registry.create("models", spec).eval().to(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(json.dumps({"row": "device", "device": name, "torch": torch.__version__}), flush=True)
    if not args.skip_forward:
        forward_rows(model.to(memory_format=torch.channels_last_3d), device, args)
    predict_rows(model, device, args)


if __name__ == "__main__":
    main()
