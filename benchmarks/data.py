"""Data loading throughput and memory: is loading ever the bottleneck?

Prints, on the real volumes in examples/data (patch 64^3, stride 32^3, 27 patches per file):

* samples/s of StandardHDF5Dataset and LazyHDF5Dataset (one process, batch 1) with the T2
  augmentation stack (Standardize, RandomFlip, RandomRotate90, ToTensor / BlobsToMask) and
  with the reference's heavy confocal-boundary stack (+ RandomRotate, ElasticDeformation,
  GaussianBlur3D, noise, StandardLabelToBoundary);
* the model's own step (UNet3D f_maps 32, forward + backward + Adam on 1x1x64^3, workload T1),
  so the ratio says how many loader workers keep one training process fed;
* peak RSS of a LazyHDF5Dataset (global normalization, FilterSliceBuilder, patches with
  augmentation, test-phase patches with halo) on a generated volume of >= 2 GB on disk,
  measured in a child process, next to the volume size. The volume is written in slabs to
  --tmp and deleted afterwards.

    python benchmarks/data.py [--skip-large] [--gb 2.1] [--tmp /tmp]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from workloads import DATA

FILES = [DATA / "nuclei3d_train_a.h5", DATA / "nuclei3d_train_b.h5"]

T2_RAW = [
    {"name": "Standardize"},
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    {"name": "ToTensor", "expand_dims": True},
]
T2_LABEL = [
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    {"name": "BlobsToMask"},
    {"name": "ToTensor", "expand_dims": False},
]
_ROT = {"name": "RandomRotate", "axes": [[2, 1]], "angle_spectrum": 45, "mode": "reflect"}
HEAVY_RAW = [
    {"name": "Standardize"},
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    _ROT,
    {"name": "ElasticDeformation", "spline_order": 3},
    {"name": "GaussianBlur3D", "execution_probability": 0.5},
    {"name": "AdditiveGaussianNoise", "execution_probability": 0.2},
    {"name": "AdditivePoissonNoise", "execution_probability": 0.2},
    {"name": "ToTensor", "expand_dims": True},
]
HEAVY_LABEL = [
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    _ROT,
    {"name": "ElasticDeformation", "spline_order": 0},
    {"name": "StandardLabelToBoundary", "append_label": True},
    {"name": "ToTensor", "expand_dims": False},
]


def experiment(dataset: str, files: list[Path], raw: list, label: list, **phase_extra):
    from unet_core.config.schema import ExperimentConfig

    builder = {"name": "SliceBuilder", "patch_shape": [64, 64, 64], "stride_shape": [32, 32, 32]}
    builder.update(phase_extra.pop("slice_builder", {}))
    section = {
        "file_paths": [str(f) for f in files],
        "slice_builder": builder,
        "transformer": {"raw": raw, "label": label},
    }
    phase = phase_extra.pop("phase", "train")
    data = {
        "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "f_maps": 32},
        "loaders": {
            "dataset": dataset,
            "global_normalization": True,
            "num_workers": 0,
            phase: section,
            **phase_extra,
        },
    }
    return ExperimentConfig.model_validate(data)


def samples_per_second(dataset: str, raw: list, label: list) -> tuple[float, float]:
    """(samples/s, build seconds) over every patch of both files, after 2 warm-up samples."""
    import torch

    from unet_core.engine.data import build_datasets

    start = time.perf_counter()
    datasets = build_datasets(experiment(dataset, FILES, raw, label), "train")
    built = time.perf_counter() - start
    torch.manual_seed(0)
    for ds in datasets:
        ds[0], ds[1]  # first access: open / load the volume
    n, start = 0, time.perf_counter()
    for ds in datasets:
        for i in range(len(ds)):
            ds[i]
            n += 1
    return n / (time.perf_counter() - start), built


def model_step_seconds(iterations: int = 3) -> float | None:
    """Median forward+backward+step of UNet3D f_maps 32 on 1x1x64^3 (workload T1)."""
    import torch

    from unet_core import registry
    from unet_core.errors import PluginError

    try:
        model = registry.create(
            "models", {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "f_maps": 32}
        )
        loss = registry.create("losses", {"name": "BCEDiceLoss"})
    except PluginError:
        return None
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-5)
    x = torch.randn(1, 1, 64, 64, 64)
    y = (torch.rand(1, 1, 64, 64, 64) > 0.7).float()
    times = []
    for i in range(iterations + 1):
        start = time.perf_counter()
        opt.zero_grad()
        loss(model(x), y).backward()
        opt.step()
        if i:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


# -- large volume --------------------------------------------------------------------------
def write_large(path: Path, gigabytes: float) -> tuple[tuple[int, int, int], int]:
    """uint16 raw (Z,2048,2048) + uint8 label, chunked 64^3, uncompressed, in 16-z slabs."""
    import h5py

    yx = 2048
    z = max(64, int(np.ceil(gigabytes * 1e9 / (yx * yx * 2) / 16)) * 16)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("raw", (z, yx, yx), np.uint16, chunks=(64, 64, 64))
        label = f.create_dataset("label", (z, yx, yx), np.uint8, chunks=(64, 64, 64))
        yy, xx = np.meshgrid(np.arange(yx) // 256, np.arange(yx) // 256, indexing="ij")
        for z0 in range(0, z, 16):
            slab = rng.integers(100, 4000, (16, yx, yx), dtype=np.uint16)
            raw[z0 : z0 + 16] = slab
            on = ((yy + xx + z0 // 64) % 3 == 0).astype(np.uint8)
            label[z0 : z0 + 16] = np.broadcast_to(on, (16, yx, yx))
    return (z, yx, yx), path.stat().st_size


def lazy_child(path: str, samples: int) -> None:
    """Runs in a fresh process: build, iterate, print JSON with peak RSS figures."""
    import torch

    from unet_core.engine.data import build_datasets

    def status_mb(field: str) -> float:
        # /proc, not getrusage: ru_maxrss carries the parent's peak across fork + exec
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def rss_mb() -> float:
        return status_mb("VmHWM")

    # warm-up on a small real file: imports every module, so the baseline holds no data
    (warm,) = build_datasets(experiment("LazyHDF5Dataset", FILES[:1], T2_RAW, T2_LABEL), "train")
    warm[0]
    base = status_mb("VmRSS")
    try:  # reset the peak to the current RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    start = time.perf_counter()
    cfg = experiment(
        "LazyHDF5Dataset",
        [Path(path)],
        T2_RAW,
        T2_LABEL,
        slice_builder={
            "name": "FilterSliceBuilder",
            "threshold": 0.5,
            "slack_acceptance": 0.01,
            "stride_shape": [64, 64, 64],
        },
    )
    (ds,) = build_datasets(cfg, "train")
    built = time.perf_counter() - start
    after_build = rss_mb()
    torch.manual_seed(0)
    picks = np.random.default_rng(0).choice(len(ds), size=min(samples, len(ds)), replace=False)
    start = time.perf_counter()
    for i in picks:
        ds[int(i)]
    rate = len(picks) / (time.perf_counter() - start)
    test = experiment(
        "LazyHDF5Dataset",
        [Path(path)],
        T2_RAW[:1] + T2_RAW[-1:],
        [],
        phase="test",
        slice_builder={"halo_shape": [8, 16, 16], "stride_shape": [64, 64, 64]},
    )
    (tds,) = build_datasets(test, "test")
    for i in list(range(0, len(tds), max(1, len(tds) // samples)))[:samples] + [len(tds) - 1]:
        tds[i]
    print(
        json.dumps(
            {
                "base_mb": base,
                "after_build_mb": after_build,
                "peak_mb": rss_mb(),
                "build_s": built,
                "samples_per_s": rate,
                "patches": len(ds),
                "grid": ds.slice_builder.total_patches,
                "test_patches": len(tds),
            }
        )
    )


def large_volume(gigabytes: float, tmp: str, samples: int) -> None:
    with tempfile.TemporaryDirectory(dir=tmp, prefix="unet-data-bench-") as folder:
        path = Path(folder) / "large.h5"
        start = time.perf_counter()
        shape, size = write_large(path, gigabytes)
        print(
            f"\ngenerated {shape} uint16 raw + uint8 label: {size / 1e9:.2f} GB on disk "
            f"({time.perf_counter() - start:.0f} s to write)"
        )
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--samples", str(samples)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
    print("LazyHDF5Dataset on it (child process, global normalization + FilterSliceBuilder):")
    print(
        f"  build (stats + filter over {r['grid']} patches, {r['patches']} kept): "
        f"{r['build_s']:.1f} s"
    )
    print(f"  {r['samples_per_s']:.1f} samples/s (T2 stack, random patches)")
    print(
        f"  peak RSS {r['peak_mb']:.0f} MB (all modules loaded, no data: {r['base_mb']:.0f} MB; "
        f"after build {r['after_build_mb']:.0f} MB) vs volume {size / 1e6:.0f} MB on disk: "
        f"growth {r['peak_mb'] - r['base_mb']:.0f} MB = "
        f"{100 * (r['peak_mb'] - r['base_mb']) / (size / 1e6):.1f}% of the volume"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-large", action="store_true", help="No >= 2 GB volume.")
    parser.add_argument("--skip-small", action="store_true", help="Only the >= 2 GB volume.")
    parser.add_argument("--gb", type=float, default=2.1, help="Size of the raw volume.")
    parser.add_argument("--tmp", default=tempfile.gettempdir(), help="Where to write it.")
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    if args.child:
        lazy_child(args.child, args.samples)
        return
    if not args.skip_small:
        print(
            f"real volumes: {', '.join(f.name for f in FILES)} (100^3 uint8), patch 64^3, "
            f"stride 32^3, 54 patches, global normalization, 1 process, torch threads 2"
        )
        step = model_step_seconds()
        rows = []
        for stack, raw, label in (("T2", T2_RAW, T2_LABEL), ("heavy", HEAVY_RAW, HEAVY_LABEL)):
            for dataset in ("StandardHDF5Dataset", "LazyHDF5Dataset"):
                rate, built = samples_per_second(dataset, raw, label)
                rows.append((dataset, stack, rate, built))
        print(
            f"{'dataset':22s} {'stack':6s} {'samples/s':>10s} {'ms/sample':>10s} "
            f"{'build s':>8s} {'x model step':>13s}"
        )
        for dataset, stack, rate, built in rows:
            ratio = f"{(1 / rate) / step:13.3f}" if step else f"{'-':>13s}"
            print(f"{dataset:22s} {stack:6s} {rate:10.1f} {1000 / rate:10.1f} {built:8.2f} {ratio}")
        if step:
            print(
                f"model step (UNet3D f_maps 32, fwd+bwd+Adam, 1x1x64^3): {step:.2f} s "
                f"= {1 / step:.2f} samples/s"
            )
    if not args.skip_large:
        large_volume(args.gb, args.tmp, args.samples)


if __name__ == "__main__":
    main()
