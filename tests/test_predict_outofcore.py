"""Out of core: a volume larger than the address space a subprocess may use (RLIMIT_AS) is
predicted completely and correctly by LazyPredictor + LazyHDF5Dataset, and segmented block by
block (ConnectedComponents)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

SHAPE = (80, 1024, 1024)  # 320 MiB of float32 in, as much out
SLAB = 8
HEADROOM_MB = 256  # what the child may allocate beyond its start-up footprint
THRESHOLD = 0.99  # sigmoid(N(0, 1)) > 0.99: ~180 sparse objects in the 84 M voxels

CHILD = r"""
import json, os, resource, sys
THRESHOLD = float(sys.argv[4])
sys.path.insert(0, sys.argv[1])
import torch
torch.set_num_threads(1)
from predict_support import Pointwise, Register, config, save_weights
from unet_core.prediction.run import run_prediction
import unet_plugins.predictors.standard, unet_plugins.datasets.hdf5  # noqa: F401 (pre-import)

def vm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize"):
            return int(line.split()[1]) / 1024

tmp, headroom = sys.argv[2], float(sys.argv[3])
with Register(PointwiseOOC=Pointwise):
    ckpt = save_weights(Pointwise(), os.path.join(tmp, "m.pytorch"))
    cfg = config({"name": "PointwiseOOC"}, ckpt, [os.path.join(tmp, "big.h5")],
                 os.path.join(tmp, "out"), dataset="LazyHDF5Dataset",
                 patch=(32, 256, 256), stride=(24, 192, 192), halo=(0, 0, 0),
                 raw_transforms=[{"name": "ToTensor", "expand_dims": True}],
                 predictor={"name": "LazyPredictor", "blending": "gaussian",
                            "compression": "none", "block_shape": [32, 128, 128],
                            "chunks": [32, 128, 128], "max_block_memory_mb": 64},
                 postprocessor={"name": "ConnectedComponents", "threshold": THRESHOLD})
    cap = int((vm_mb() + headroom) * 2**20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        big = bytearray(int((headroom + 64) * 2**20))  # the cap is real
        print("CAP-NOT-ENFORCED", file=sys.stderr)
        sys.exit(3)
    except MemoryError:
        pass
    try:  # the peak from here on: what start-up touched before the cap does not count
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    (written,) = run_prediction(cfg)
peak = next(int(line.split()[1]) for line in open("/proc/self/status")
            if line.startswith("VmHWM")) / 1024
print(json.dumps({"path": written.path, "cap_mb": cap / 2**20, "peak_rss_mb": peak,
                  "stats": written.stats}))
"""


def _write_big(path: Path) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("raw", shape=SHAPE, dtype="float32", chunks=(16, 128, 128))
        for z in range(0, SHAPE[0], SLAB):
            ds[z : z + SLAB] = rng.standard_normal((SLAB, *SHAPE[1:]), dtype=np.float32)


@pytest.mark.slow
def test_lazy_prediction_of_a_volume_larger_than_the_memory_cap(tmp_path):
    big = tmp_path / "big.h5"
    _write_big(big)
    tests_dir = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, tests_dir, str(tmp_path), str(HEADROOM_MB), str(THRESHOLD)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    volume_mb = np.prod(SHAPE) * 4 / 2**20
    assert volume_mb > HEADROOM_MB and report["peak_rss_mb"] < report["cap_mb"]
    assert report["stats"]["spilled_blocks"] > 0  # the block budget was exercised
    with h5py.File(big) as fin, h5py.File(report["path"]) as fout:
        pred = fout["predictions"]
        assert pred.shape == (1, *SHAPE)
        points = []
        for z in range(0, SHAPE[0], 16):
            raw = fin["raw"][z : z + 16]
            np.testing.assert_allclose(pred[0, z : z + 16], 1 / (1 + np.exp(-raw)), atol=1e-6)
            points.append(np.argwhere(pred[0, z : z + 16] > THRESHOLD) + (z, 0, 0))
        seg = fout["segmentation"]
        assert seg.shape == SHAPE and seg.dtype == np.uint16
        labelled = sum(int(np.count_nonzero(seg[z : z + 16])) for z in range(0, SHAPE[0], 16))
        points = np.concatenate(points)  # raster order
        assert 50 < len(points) == labelled
        expected = _sparse_components(points)
        found = np.array([seg[tuple(p)] for p in points])
        np.testing.assert_array_equal(found, expected)


def _sparse_components(points: np.ndarray) -> np.ndarray:
    """Face-connected components of a few voxels, numbered in raster order of first voxel."""
    where = {tuple(p): i for i, p in enumerate(points)}
    parent = list(range(len(points)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, p in enumerate(points):
        for axis in range(3):
            q = list(p)
            q[axis] += 1
            j = where.get(tuple(q))
            if j is not None:
                parent[root(j)] = root(i)
    numbers: dict[int, int] = {}
    return np.array([numbers.setdefault(root(i), len(numbers) + 1) for i in range(len(points))])
