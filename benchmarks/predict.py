"""Prediction speed and memory: reference mode, fast mode, the bare forward, the reference.

Workloads (benchmarks/WORKLOADS.md), model UNet3D(1 -> 1, f_maps 32, gcr, 8 groups, 4 levels)
with random weights (speed does not depend on them), torch.set_num_threads(--threads):

* P1: the real 100^3 volume ``nuclei3d_train_a.h5``; SliceBuilder patch 64^3, stride 32^3,
  halo 0 (and ``--halo 8``); Standardize + ToTensor; float32 output, gzip.
* P2: a generated 160^3 float32 volume, same settings.
* lazy (``--lazy``): LazyHDF5Dataset + LazyPredictor (fast mode, uint8 output) on a generated
  volume of ``--lazy-gb`` GB (default 4.1) with a tiny UNet3D (f_maps [2, 4]) so that the run
  measures the streaming path, not the CPU's convolution speed; prints peak RSS.

Modes: ``reference`` (the reference's config unchanged), ``fast`` (``predictor.fast: true`` at
the default precision, ``auto``), ``fast-fp32`` / ``fast-bf16`` (fast + ``amp: none``/``bf16``),
``fast-openvino`` / ``fast-onnxruntime`` (fast + ``backend: openvino|onnxruntime``; per-forward
times of every backend: benchmarks/backends.py).
Fast mode's tile plan is measured once before the rounds (``unet predict --plan``, timed and
printed) into a cache folder of this run, so the timed rounds use it as a user's later runs do.
``--monai PYTHON`` adds MONAI's ``sliding_window_inference`` (roi 64, overlap 0.25, gaussian,
batch 2; fp32 and bf16) as whole processes run by a side environment's python
(benchmarks/monai_predict.py, the same network traced to TorchScript). Each run is a child
process (clean peak RSS) that prints: wall time of the prediction (``run_prediction``:
building the model, reading, forwards, blending, writing), voxels/s, the bare batched forward
over the same tiles under inference_mode (workload L, warmed up, after the prediction) and the
overhead ratio against it, the overhead against the prediction's own forwards (``in-run``:
the host seconds PatchForward spent in them, which the round-to-round speed of the machine
cannot skew), the redundancy factor (computed voxels / volume voxels), peak RSS.
``--reference PYTHON`` also runs pytorch-3dunet's ``predict3dunet`` (installed in a separate
venv, e.g. /tmp/refvenv/bin/python) on the same config, as a process, next to ours as a
process, for a side-by-side ratio.

    python benchmarks/predict.py [--workloads P1,P2] [--modes reference,fast] [--halo 0]
        [--reference /work/refvenv/bin/python] [--monai /work/monaivenv/bin/python]
        [--repeat 2] [--lazy] [--lazy-gb 4.1] [--tmp DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from workloads import DATA
from workloads import STANDARD_UNET as MODEL

from unet_core.config import phase_section

TINY = {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "f_maps": [2, 4], "num_groups": 1}
MODES = {
    "reference": {"name": "StandardPredictor"},
    "fast": {"name": "StandardPredictor", "fast": True},  # default precision: auto
    "fast-fp32": {"name": "StandardPredictor", "fast": True, "amp": "none"},
    "fast-bf16": {"name": "StandardPredictor", "fast": True, "amp": "bf16"},
}

#: Fast mode with an inference backend (``predictor.backend``, extras [openvino]/[onnxruntime]).
#: The first run converts the model into the user cache; ``--repeat 2`` times the cached one.
BACKEND_MODES = {
    f"fast-{backend}": {"name": "StandardPredictor", "fast": True, "backend": backend}
    for backend in ("openvino", "onnxruntime")
}
MODES.update(BACKEND_MODES)


DEVICE = "cpu"


def experiment(
    model: dict,
    ckpt: Path,
    volume: Path,
    out: Path,
    predictor: dict,
    halo: int,
    dataset: str = "StandardHDF5Dataset",
    workers: int = 1,
) -> dict[str, Any]:
    return {
        "model_path": str(ckpt),
        "model": model,
        "device": DEVICE,
        "predictor": predictor,
        "loaders": {
            "dataset": dataset,
            "output_dir": str(out),
            "batch_size": 1,
            "num_workers": workers,
            "test": phase_section([volume], [64, 64, 64], [32, 32, 32], halo_shape=[halo] * 3),
        },
    }


# -- child: one prediction, then the bare forward over the same tiles -----------------------------
def child(cfg_path: str, threads: int, bare: bool = True) -> None:
    from unet_core.engine.allocator import keep_freed_memory

    keep_freed_memory()  # as `unet predict` does (UNET_KEEP_FREED_MEMORY=0: glibc's defaults)
    import torch
    import yaml

    from unet_core.config import load_config
    from unet_core.prediction.run import build_model, run_prediction, test_datasets

    torch.set_num_threads(threads)
    cfg = load_config(cfg_path)
    start = time.perf_counter()
    (written,) = run_prediction(cfg, overwrite=True)
    wall = time.perf_counter() - start
    done = time.time()  # the parent turns this into "process start -> output written"
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not bare:  # the streaming run: its figure is memory; a bare pass would double its time
        print(
            json.dumps(
                {
                    "wall_s": wall,
                    "done_at": done,
                    "peak_rss_mb": peak_rss,
                    "stats": {k: v for k, v in written.stats.items() if k != "seconds"},
                }
            )
        )
        return

    from unet_core.engine.device import resolve_device
    from unet_core.prediction.run import build_predictor

    predictor = build_predictor(cfg, build_model(cfg), resolve_device(cfg.device), overwrite=True)
    (dataset,) = list(test_datasets(cfg, predictor))
    tile = tuple(
        s.stop - s.start + 2 * h for s, h in zip(dataset.raw_slices[0][-3:], dataset.halo_shape)
    )
    batch = predictor.batch_for(dataset) if hasattr(predictor, "batch_for") else 1
    n = len(dataset.raw_slices)
    sizes = [batch] * (n // batch) + ([n % batch] if n % batch else [])
    inputs = {b: torch.randn(b, 1, *tile) for b in set(sizes)}
    for b in inputs:  # warm-up, as the prediction above warmed up its own first forward
        predictor.forward(inputs[b])
    start = time.perf_counter()
    for b in sizes:  # the predictor's own forward (layout, autocast, TTA), no I/O
        predictor.forward(inputs[b])
    bare = time.perf_counter() - start
    volume = float(np.prod(dataset.volume_shape))
    print(
        json.dumps(
            {
                "wall_s": wall,
                "done_at": done,
                "voxels_per_s": volume / wall,
                "bare_forward_s": bare,
                "overhead": wall / bare - 1.0,
                # against this run's own forwards (PatchForward.seconds): no second
                # measurement whose speed may differ (the bare forwards vary 1.5x by round)
                "overhead_in_run": wall / max(written.stats.get("forward_seconds", 0.0), 1e-9)
                - 1.0,
                "redundancy": written.stats.get("redundancy"),
                "patches": len(dataset.raw_slices),
                "tile": list(tile),
                "batch": batch,
                "peak_rss_mb": peak_rss,
                "stats": {k: v for k, v in written.stats.items() if k != "seconds"},
                "yaml": yaml.safe_dump(cfg.predictor.dump(), default_flow_style=True).strip(),
            }
        )
    )


def run_child(
    cfg: dict[str, Any], tmp: Path, name: str, threads: int, bare: bool = True
) -> dict[str, Any]:
    import yaml

    path = tmp / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    start = time.time()
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--threads", str(threads)]
        + ([] if bare else ["--no-bare"]),
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["process_s"] = report["done_at"] - start  # start-up + prediction, as a user waits
    return report


def run_reference(python: str, cfg: dict[str, Any], tmp: Path, name: str, threads: int) -> float:
    """pytorch-3dunet's predict3dunet on the same config, as a process; wall seconds."""
    import yaml

    ref_cfg = json.loads(json.dumps(cfg))
    ref_cfg["loaders"]["output_dir"] = str(tmp / f"ref-{name}")
    ref_cfg["predictor"] = {"name": "StandardPredictor"}
    path = tmp / f"ref-{name}.yml"
    path.write_text(yaml.safe_dump(ref_cfg))
    code = (
        f"import torch; torch.set_num_threads({threads}); import sys; "
        "sys.path.insert(0, __import__('os').environ.get('REFERENCE_SRC', '.')); "
        f"sys.argv = ['predict3dunet', '--config', {str(path)!r}]; "
        "from pytorch3dunet.predict import main; main()"
    )
    start = time.perf_counter()
    out = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"reference {name} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - start


# -- workloads ------------------------------------------------------------------------------------
def make_checkpoint(tmp: Path, spec: dict[str, Any], name: str) -> Path:
    import torch

    from unet_core import registry

    torch.manual_seed(0)
    model = registry.create("models", spec)
    path = tmp / f"{name}.pytorch"
    torch.save({"model_state_dict": model.state_dict()}, path)
    return path


def generated_volume(path: Path, shape: tuple[int, int, int], slab: int = 16) -> Path:
    """Smooth random intensities (blobs), written in z-slabs so memory stays small."""
    import h5py
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "raw",
            shape=shape,
            dtype="float32",
            chunks=(min(32, shape[0]), min(128, shape[1]), min(128, shape[2])),
        )
        for z in range(0, shape[0], slab):
            depth = min(slab, shape[0] - z)
            block = rng.standard_normal((depth, *shape[1:]), dtype=np.float32)
            ds[z : z + depth] = ndi.uniform_filter(block, size=(1, 5, 5)) * 40 + 100
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", default="P1,P2")
    parser.add_argument("--modes", default="reference,fast")
    parser.add_argument("--halo", type=int, default=0)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds over all modes (and the reference), "
        "alternating; the fastest round of each counts (shared machines drift)",
    )
    parser.add_argument("--reference", help="python of a venv with pytorch3dunet installed")
    parser.add_argument("--monai", help="python of a side venv with torch, monai and h5py")
    parser.add_argument("--lazy", action="store_true", help="also the >= 4 GB streaming run")
    parser.add_argument("--lazy-gb", type=float, default=4.1)
    parser.add_argument(
        "--lazy-budget-mb",
        type=float,
        default=1024.0,
        help="LazyPredictor max_block_memory_mb for the streaming run",
    )
    parser.add_argument("--no-bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--data", default=str(DATA), help="folder with nuclei3d_train_a.h5")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="only time bare forwards: tile edges and execution variants",
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.threads, bare=not args.no_bare)
        return
    global DEVICE
    DEVICE = args.device
    if args.sweep:
        sweep(args)
        return
    with tempfile.TemporaryDirectory(dir=args.tmp) as name:
        tmp = Path(name)
        os.environ["UNET_CORE_CACHE"] = str(tmp / "cache")  # the children's tile plans
        ckpt = make_checkpoint(tmp, MODEL, "unet3d_f32")
        volumes = {"P1": Path(args.data) / "nuclei3d_train_a.h5"}
        if "P2" in args.workloads:
            volumes["P2"] = generated_volume(tmp / "p2.h5", (160, 160, 160))
        for workload in filter(None, args.workloads.split(",")):
            compare(workload, volumes[workload], ckpt, tmp, args)
        if args.lazy:
            lazy(tmp, args)


def compare(workload: str, volume: Path, ckpt: Path, tmp: Path, args: argparse.Namespace) -> None:
    """Every mode (and the reference) on one workload, ``--repeat`` alternating rounds."""
    best: dict[str, dict[str, Any]] = {}
    reference: list[float] = []
    monai: dict[str, list[float]] = {"monai-fp32": [], "monai-bf16": []}
    if any(m.startswith("fast") for m in args.modes.split(",")):
        plan_once(workload, volume, ckpt, tmp, args)
    for _ in range(args.repeat):
        for mode in args.modes.split(","):
            cfg = experiment(MODEL, ckpt, volume, tmp / "out", dict(MODES[mode]), args.halo)
            report = run_child(cfg, tmp, f"{workload}-{mode}", args.threads)
            _print_row(workload, mode, report)
            if mode not in best or report["wall_s"] < best[mode]["wall_s"]:
                best[mode] = report
        if args.reference:
            cfg = experiment(MODEL, ckpt, volume, tmp / "out", dict(MODES["reference"]), args.halo)
            reference.append(run_reference(args.reference, cfg, tmp, workload, args.threads))
            print(
                f"{workload} pytorch-3dunet predict3dunet process {reference[-1]:.1f} s", flush=True
            )
        if args.monai:
            for bf16 in (False, True):
                key = "monai-bf16" if bf16 else "monai-fp32"
                seconds, windows = run_monai(args.monai, ckpt, volume, tmp, bf16, args.threads)
                monai[key].append(seconds)
                print(
                    f"{workload} {key} process {seconds:.1f} s (windows alone {windows:.1f} s)",
                    flush=True,
                )
    print(f"{workload} best of {args.repeat}:")
    for mode, r in best.items():
        line = f"  {mode:10s} wall {r['wall_s']:.1f} s, process {r['process_s']:.1f} s"
        if reference:
            line += f" -> {min(reference) / r['process_s']:.2f}x pytorch-3dunet's speed"
        if monai["monai-bf16"]:
            line += f", {min(monai['monai-bf16']) / r['process_s']:.2f}x MONAI bf16's"
        print(line, flush=True)
    if reference:
        print(f"  pytorch-3dunet process {min(reference):.1f} s", flush=True)
    for key, times in monai.items():
        if times:
            print(f"  {key} process {min(times):.1f} s", flush=True)


def plan_once(workload: str, volume: Path, ckpt: Path, tmp: Path, args: argparse.Namespace) -> None:
    """``unet predict --plan`` as a process: measures fast mode's tiles into the run's cache."""
    import yaml

    cfg = experiment(MODEL, ckpt, volume, tmp / "out", dict(MODES["fast"]), args.halo)
    path = tmp / f"{workload}-plan.yml"
    path.write_text(yaml.safe_dump(cfg))
    code = (
        f"import torch; torch.set_num_threads({args.threads}); import sys; "
        f"sys.argv = ['unet', 'predict', '--config', {str(path)!r}, '--plan']; "
        "from unet_core.cli.main import main; main()"
    )
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"plan failed:\n{out.stderr[-3000:]}{out.stdout[-3000:]}")
    print(f"{workload} tile plan measured in {time.perf_counter() - start:.1f} s (process):")
    print(out.stdout.rstrip(), flush=True)


def run_monai(
    python: str, ckpt: Path, volume: Path, tmp: Path, bf16: bool, threads: int
) -> tuple[float, float]:
    """MONAI's sliding window as a process in its own environment: (process s, windows s)."""
    traced = tmp / "model_traced.pt"
    if not traced.exists():
        trace_model(ckpt, traced)
    out = tmp / f"monai-{'bf16' if bf16 else 'fp32'}.h5"
    script = Path(__file__).with_name("monai_predict.py")
    cmd = [python, str(script), str(traced), str(volume), str(out), "--threads", str(threads)]
    start = time.perf_counter()
    res = subprocess.run(cmd + (["--bf16"] if bf16 else []), capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"MONAI run failed:\n{res.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    return seconds, float(res.stdout.split()[-1])


def trace_model(ckpt: Path, path: Path) -> None:
    """The benchmark's network with its weights as TorchScript (eval mode: probabilities)."""
    import torch

    from unet_core import registry

    model = registry.create("models", MODEL)
    model.load_state_dict(torch.load(ckpt, weights_only=True)["model_state_dict"])
    model.eval()
    with torch.inference_mode():
        traced = torch.jit.trace(model, torch.zeros(1, 1, 64, 64, 64))
    traced.save(str(path))


def _print_row(workload: str, mode: str, r: dict[str, Any]) -> None:
    print(
        f"{workload} {mode:10s} wall {r['wall_s']:6.1f} s  {r['voxels_per_s'] / 1e3:7.1f} "
        f"kvox/s  bare forward {r['bare_forward_s']:6.1f} s  overhead "
        f"{100 * r['overhead']:+5.1f} % (in-run {100 * r['overhead_in_run']:+5.1f} %)  "
        f"redundancy {r['redundancy']:.2f}  "
        f"{r['patches']} x {r['tile']} (batch {r['batch']})  peak RSS "
        f"{r['peak_rss_mb']:.0f} MB  process {r['process_s']:.1f} s",
        flush=True,
    )


def sweep(args: argparse.Namespace) -> None:
    """Bare forward of the P1 model: seconds and kvox/s per tile edge and variant."""
    import torch

    from unet_core import registry

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = registry.create("models", MODEL).eval().to(device)

    def timed(fn: Any, x: Any, reps: int = 3) -> float:
        with torch.inference_mode():
            fn(x)
            best = float("inf")
            for _ in range(reps):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn(x).cpu()
                best = min(best, time.perf_counter() - start)
        return best

    for edge in (48, 58, 64, 80, 96, 128) if device.type == "cuda" else (48, 58, 64, 80, 96):
        x = torch.randn(1, 1, edge, edge, edge, device=device)
        t = timed(model, x)
        print(f"sweep edge {edge}: {t:.3f} s, {edge**3 / t / 1e3:.0f} kvox/s", flush=True)
    x = torch.randn(1, 1, 64, 64, 64, device=device)
    base = timed(model, x)
    x2 = torch.randn(2, 1, 64, 64, 64, device=device)
    print(
        f"sweep 64^3 eager {base:.3f} s; batch 2 per patch {timed(model, x2) / 2:.3f} s", flush=True
    )
    cl = model.to(memory_format=torch.channels_last_3d)
    print(
        f"sweep 64^3 channels_last_3d "
        f"{timed(cl, x.contiguous(memory_format=torch.channels_last_3d)):.3f} s",
        flush=True,
    )
    model = model.to(memory_format=torch.contiguous_format)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        print(f"sweep 64^3 bf16 autocast {timed(model, x):.3f} s", flush=True)
    start = time.perf_counter()
    with torch.inference_mode():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    prep = time.perf_counter() - start
    print(
        f"sweep 64^3 jit freeze+optimize_for_inference {timed(frozen, x):.3f} s "
        f"(preparation {prep:.1f} s)",
        flush=True,
    )


def lazy(tmp: Path, args: argparse.Namespace) -> None:
    edge = int(round((args.lazy_gb * 1e9 / 4) ** (1 / 3)))
    shape = (edge, edge, edge)
    start = time.perf_counter()
    volume = generated_volume(tmp / "big.h5", shape, slab=32)
    print(
        f"lazy: generated {shape} float32 = {os.path.getsize(volume) / 1e9:.2f} GB on disk "
        f"in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    ckpt = make_checkpoint(tmp, TINY, "tiny")
    predictor = {
        "name": "LazyPredictor",
        "fast": True,
        "output_dtype": "uint8",
        "compression": "lzf",
        "max_block_memory_mb": args.lazy_budget_mb,
    }
    cfg = experiment(  # no loader worker: the peak RSS then covers everything
        TINY, ckpt, volume, tmp / "out", predictor, 0, dataset="LazyHDF5Dataset", workers=0
    )
    r = run_child(cfg, tmp, "lazy", args.threads, bare=False)
    voxels = float(np.prod(shape))
    print(
        f"lazy: volume {os.path.getsize(volume) / 2**20:.0f} MiB, wall {r['wall_s']:.0f} s "
        f"({voxels / r['wall_s'] / 1e6:.2f} Mvox/s), {r['stats'].get('patches')} tiles, peak RSS "
        f"{r['peak_rss_mb']:.0f} MiB (one process, no loader worker), block budget "
        f"{args.lazy_budget_mb:.0f} MiB, open blocks {r['stats'].get('peak_open_blocks')}, "
        f"spilled {r['stats'].get('spilled_blocks')}"
    )


if __name__ == "__main__":
    main()
