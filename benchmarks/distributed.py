"""Distributed prediction: one process vs a Dask LocalCluster of N workers, OME-Zarr in and out.

Generates a float32 OME-Zarr volume of ``--gigabytes`` (block by block, never whole in
memory), predicts it with LazyPredictor in this process and then with ``distributed:`` on
LocalClusters of each ``--workers`` count, and prints one JSON line per run: seconds,
voxels per second (total and per core), peak RSS of the client and of every worker, and the
largest difference to the single-process output on a sample of blocks.

    python benchmarks/distributed.py --gigabytes 8 --workers 1 2     # the issue's benchmark
    python benchmarks/distributed.py --gigabytes 0.02 --workers 2    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# this file's folder must not shadow the `distributed` package it benchmarks
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent / "tests"))


def make_volume(path: Path, gigabytes: float, chunk: int = 64) -> tuple[int, int, int]:
    """A float32 volume of about ``gigabytes`` as OME-Zarr ('raw'), written chunk slab by slab."""
    from unet_core.formats import VolumeInfo
    from unet_core.prediction.output_files import open_output

    voxels = gigabytes * 2**30 / 4
    edge = max(chunk, int(round((voxels / 0.25) ** (1 / 3) / chunk)) * chunk)
    shape = (max(chunk, int(edge / 4 // chunk * chunk) or chunk), edge, edge)
    rng = np.random.default_rng(0)
    with open_output(path, "zarr") as out:
        raw = out.create("raw", shape, np.float32, chunks=(chunk, 128, 128), info=VolumeInfo())
        for z in range(0, shape[0], chunk):
            depth = min(chunk, shape[0] - z)
            raw[z : z + depth] = rng.normal(size=(depth, *shape[1:])).astype(np.float32)
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
        halo=(8, 8, 8),
        dataset="LazyHDF5Dataset",
        predictor={
            "name": "LazyPredictor",
            "output_format": "zarr",
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
        worst = max(worst, float(np.abs(x[box] - y[box]).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gigabytes", type=float, default=8.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--f-maps", type=int, default=8)
    parser.add_argument("--skip-single", action="store_true", help="Only the Dask runs.")
    parser.add_argument("--dir", type=Path, default=None, help="Work folder (default: temp).")
    args = parser.parse_args()

    import torch
    from predict_support import save_weights, tiny_unet

    from unet_core.prediction.run import run_prediction

    torch.set_num_threads(1)
    work = args.dir or Path(tempfile.mkdtemp(prefix="unet-dist-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    volume = work / "volume.ome.zarr"
    start = time.perf_counter()
    shape = make_volume(volume, args.gigabytes)
    print(f"# volume {shape} float32 written in {time.perf_counter() - start:.1f} s", flush=True)
    model, spec = tiny_unet(f_maps=args.f_maps, num_groups=min(4, args.f_maps))
    ckpt = save_weights(model, work / "model.pytorch")
    voxels = math.prod(shape)
    single = None
    if not args.skip_single:
        start = time.perf_counter()
        (written,) = run_prediction(config(volume, work / "single", ckpt, spec, args.patch))
        seconds = time.perf_counter() - start
        single = Path(written.path)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            json.dumps(
                {
                    "run": "single process",
                    "shape": shape,
                    "seconds": round(seconds, 2),
                    "voxels_per_s": voxels / seconds,
                    "voxels_per_s_per_core": voxels / seconds,
                    "peak_rss_mb": round(peak),
                }
            ),
            flush=True,
        )
    for n in args.workers:
        from distributed import Client, LocalCluster

        with LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster:
            out = work / f"dask{n}"
            cfg = config(
                volume,
                out,
                ckpt,
                spec,
                args.patch,
                distributed={"scheduler": cluster.scheduler_address},
            )
            start = time.perf_counter()
            (written,) = run_prediction(cfg)
            seconds = time.perf_counter() - start
            with Client(cluster) as client:
                rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        result = {
            "run": f"dask {n} worker(s)",
            "shape": shape,
            "seconds": round(seconds, 2),
            "voxels_per_s": voxels / seconds,
            "voxels_per_s_per_core": voxels / seconds / n,
            "worker_peak_rss_mb": sorted(round(v) for v in rss.values()),
            "blocks": written.stats["blocks"],
        }
        if single is not None:
            result["max_abs_difference"] = max_difference(single, Path(written.path))
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
