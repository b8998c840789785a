"""Distributed prediction: one process vs a Dask LocalCluster of N workers, OME-Zarr in and out.

For each ``--gigabytes`` size, generates a float32 OME-Zarr volume (block by block, never whole
in memory), predicts it with LazyPredictor in this process and then with ``distributed:`` on a
fresh LocalCluster for each ``--workers`` count, and prints one JSON line per run: seconds,
voxels per second (total and per core), CPU seconds (of the workers and of the client; on a
shared machine voxels per CPU second compare runs better than wall time), seconds per block,
peak RSS of every worker (flat in the volume size: compare the sizes), and the largest
difference to the single-process output on a sample of blocks. The model is deliberately
tiny (the tests' ``Blur``: one 3x3x3 convolution, ~27 multiply-adds per voxel; ``--unet``
for a small UNet3D) so that 8 GB predict in minutes on two CPU cores: the figures measure the
engine (reading, halo, blending, quantising, compressing, writing, scheduling), not a network.

Then times the per-block labelling of the block-wise connected components: scipy.ndimage.label
against cc3d (connected-components-3d), when installed.

    python benchmarks/distributed.py --gigabytes 8 1 --workers 1 2   # the issue's benchmark
    python benchmarks/distributed.py --gigabytes 0.05 --workers 2    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# this file's folder must not shadow the `distributed` package it benchmarks
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "tests"))


def volume_shape(gigabytes: float, chunk: int) -> tuple[int, int, int]:
    """(Z, Y, X) of about ``gigabytes`` of float32, Z a quarter of Y = X, whole chunks."""
    voxels = gigabytes * 2**30 / 4
    edge = max(chunk, int(round((voxels * 4) ** (1 / 3) / chunk)) * chunk)
    return max(chunk, int(edge / 4 // chunk * chunk) or chunk), edge, edge


def make_volume(path: Path, gigabytes: float, chunk: int = 64) -> tuple[int, int, int]:
    """A float32 volume as OME-Zarr ('raw'): waves plus noise in [0, 1] (so a box filter's
    output is a probability), one chunk row at a time."""
    from unet_core.formats import VolumeInfo
    from unet_core.prediction.output_files import open_output

    shape = volume_shape(gigabytes, chunk)
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(shape[2], dtype=np.float32) / 9.0)
    with open_output(path, "zarr") as out:
        raw = out.create("raw", shape, np.float32, chunks=(chunk, 128, 128), info=VolumeInfo())
        for z in range(0, shape[0], chunk):
            for y in range(0, shape[1], 128):
                depth, rows = min(chunk, shape[0] - z), min(128, shape[1] - y)
                noise = rng.standard_normal((depth, rows, shape[2]), dtype=np.float32)
                raw[z : z + depth, y : y + rows] = np.clip(0.5 + 0.25 * x + 0.1 * noise, 0, 1)
    return shape


def config(volume: Path, out: Path, ckpt: Path, spec: dict, patch: int, **extra: object) -> dict:
    from predict_support import config as make

    return make(
        spec,
        ckpt,
        [volume],
        out,
        patch=(patch, patch, patch),
        stride=(patch, patch, patch),
        halo=(4, 4, 4),
        dataset="LazyHDF5Dataset",
        raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
        predictor={
            "name": "LazyPredictor",
            "output_format": "zarr",
            "output_dtype": "uint8",
            "chunks": [patch, patch, patch],
            "batch_size": 1,
        },
        **extra,
    )


def max_difference(a: Path, b: Path, samples: int = 8) -> float:
    import zarr

    x, y = zarr.open(str(a), mode="r")["predictions"], zarr.open(str(b), mode="r")["predictions"]
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(samples):
        z, yy, xx = (int(rng.integers(0, max(1, n - 32))) for n in x.shape[1:])
        box = (slice(None), slice(z, z + 32), slice(yy, yy + 32), slice(xx, xx + 32))
        worst = max(worst, float(np.abs(x[box].astype(float) - y[box].astype(float)).max()))
    return worst


def labelling_benchmark(edge: int = 128, repeats: int = 3) -> None:
    """scipy.ndimage.label vs cc3d on one block of ~10 % foreground blobs (what a block task
    of the connected components labels), 6- and 26-connectivity; median seconds."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    smooth = ndi.gaussian_filter(rng.standard_normal((edge,) * 3).astype(np.float32), 2.0)
    mask = smooth > np.quantile(smooth, 0.9)
    try:
        import cc3d
    except ImportError:
        cc3d = None
    for connectivity, faces in ((1, 6), (3, 26)):
        structure = ndi.generate_binary_structure(3, connectivity)
        runs = {"scipy.ndimage.label": lambda s=structure: ndi.label(mask, structure=s)}
        if cc3d is not None:
            runs["cc3d.connected_components"] = lambda f=faces: cc3d.connected_components(
                mask, connectivity=f
            )
        result: dict[str, object] = {"labelling": f"{edge}^3 block, {faces}-connectivity"}
        for name, run in runs.items():
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
            result[name] = round(float(np.median(times)), 4)
        print(json.dumps(result), flush=True)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux keeps that across fork and exec,
    so a worker spawned by this process would report this process's size as its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time of this process and its threads (user + system): unlike wall time, it does not
    grow when other jobs share the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_size(
    args: argparse.Namespace, gigabytes: float, work: Path, ckpt: Path, spec: dict
) -> None:
    from distributed import Client, LocalCluster

    from unet_core.prediction.run import run_prediction

    volume = work / f"volume_{gigabytes:g}GB.ome.zarr"
    start = time.perf_counter()
    if args.keep and volume.exists():  # a volume kept by an earlier run of the same size
        import zarr

        shape = tuple(zarr.open(str(volume), mode="r")["raw"].shape)
    else:
        shape = make_volume(volume, gigabytes)
    voxels = math.prod(shape)
    print(
        f"# volume {shape} float32 = {voxels * 4 / 2**30:.2f} GiB uncompressed, written in "
        f"{time.perf_counter() - start:.1f} s",
        flush=True,
    )
    single = None
    if not args.skip_single and gigabytes <= args.single_up_to:
        start, cpu = time.perf_counter(), cpu_seconds()
        (written,) = run_prediction(config(volume, work / "single", ckpt, spec, args.patch))
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        single = Path(written.path)
        print(
            json.dumps(
                {
                    "run": "single process",
                    "shape": shape,
                    "seconds": round(seconds, 2),
                    "voxels_per_s": round(voxels / seconds),
                    "voxels_per_s_per_core": round(voxels / seconds),
                    "cpu_seconds": round(cpu, 1),
                    "voxels_per_cpu_second": round(voxels / cpu),
                    "peak_rss_mb": round(peak_rss_mb()),
                }
            ),
            flush=True,
        )
    for n in args.workers:
        with (
            LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            out = work / f"dask{n}"
            dist = {"scheduler": cluster.scheduler_address}
            cfg = config(volume, out, ckpt, spec, args.patch, distributed=dist)
            before, client_cpu = client.run(cpu_seconds), cpu_seconds()
            start = time.perf_counter()
            (written,) = run_prediction(cfg)
            seconds = time.perf_counter() - start
            after, client_cpu = client.run(cpu_seconds), cpu_seconds() - client_cpu
            rss = client.run(peak_rss_mb)
            worker_cpu = sum(after[w] - before[w] for w in after)
        blocks = written.stats["blocks"]
        result = {
            "run": f"dask {n} worker(s)",
            "shape": shape,
            "seconds": round(seconds, 2),
            "voxels_per_s": round(voxels / seconds),
            "voxels_per_s_per_core": round(voxels / seconds / n),
            "blocks": blocks,
            "block_voxels": (2 * args.patch) ** 3,
            "seconds_per_block_per_core": round(seconds * n / blocks, 3),
            "worker_cpu_seconds": round(worker_cpu, 1),
            "client_cpu_seconds": round(client_cpu, 1),
            "voxels_per_cpu_second": round(voxels / (worker_cpu + client_cpu)),
            "worker_cpu_seconds_per_block": round(worker_cpu / blocks, 3),
            "worker_peak_rss_mb": sorted(round(v) for v in rss.values()),
        }
        if single is not None:
            result["max_abs_difference"] = max_difference(single, Path(written.path))
        print(json.dumps(result), flush=True)
        shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "single", ignore_errors=True)
    if not args.keep:
        shutil.rmtree(volume, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, nargs="+", default=[8.0, 1.0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--unet", action="store_true", help="UNet3D f_maps 4 instead of Blur.")
    parser.add_argument(
        "--single-up-to", type=float, default=2.0, help="Single-process runs up to this size."
    )
    parser.add_argument("--skip-single", action="store_true", help="Only the Dask runs.")
    parser.add_argument("--skip-labelling", action="store_true")
    parser.add_argument(
        "--keep", action="store_true", help="Keep the generated volumes (and reuse kept ones)."
    )
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: temp).")
    args = parser.parse_args()

    import torch
    from predict_support import Blur, Register, save_weights, tiny_unet

    torch.set_num_threads(1)
    if not args.skip_labelling:
        labelling_benchmark()
    work = args.dir or Path(tempfile.mkdtemp(prefix="unet-dist-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    with Register(Blur=Blur):  # workers import it from tests/predict_support.py
        if args.unet:
            model, spec = tiny_unet(f_maps=4, num_groups=1, out_channels=1, final_sigmoid=True)
        else:
            spec = {"name": "Blur", "in_channels": 1, "out_channels": 1}
            model = Blur()
        ckpt = save_weights(model, work / "model.pytorch")
        print(f"# model: {spec}", flush=True)
        for gigabytes in args.gigabytes:
            run_size(args, gigabytes, work, ckpt, spec)


if __name__ == "__main__":
    main()
