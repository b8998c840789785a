"""Workload S: wall time of `unet --help` and `unet plugins list` vs `python -c pass`, and
how long `unet predict` takes from process start to its first forward pass.

Prints the median of N runs of each and the ratio to a bare interpreter start. The predict
figure runs `unet predict` (the console script's entry point) on a small volume with a tiny
checkpoint; the child notes the moment its first forward starts, the parent subtracts the
moment it started the process. Run:
    python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: The child: `unet predict ARGS`, printing the wall-clock moment of the first forward.
FIRST_FORWARD = """
import sys, time
from unet_core.prediction import inference
original = inference.PatchForward.__call__
def first(self, batch):
    if not getattr(inference, "_seen", False):
        inference._seen = True
        print("FIRST_FORWARD", time.time(), file=sys.stderr, flush=True)
    return original(self, batch)
inference.PatchForward.__call__ = first
from unet_core.cli.main import main
sys.argv = ["unet", "predict", *sys.argv[1:]]
main()
"""


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def predict_startup(runs: int) -> float:
    """Median seconds from starting `unet predict` to its first forward (tiny model, 32^3)."""
    import h5py
    import numpy as np
    import torch
    import yaml

    from unet_core import registry

    spec = {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "f_maps": [4, 8]}
    spec["num_groups"] = 1
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        torch.save({"model_state_dict": registry.create("models", spec).state_dict()},
                   tmp / "w.pytorch")  # fmt: skip
        with h5py.File(tmp / "in.h5", "w") as f:
            f["raw"] = np.random.default_rng(0).random((32, 32, 32), dtype=np.float32)
        cfg = {
            "model_path": str(tmp / "w.pytorch"),
            "model": spec,
            "device": "cpu",
            "loaders": {
                "output_dir": str(tmp / "out"),
                "num_workers": 0,
                "test": {
                    "file_paths": [str(tmp / "in.h5")],
                    "slice_builder": {"name": "SliceBuilder", "patch_shape": [32, 32, 32],
                                      "stride_shape": [32, 32, 32],
                                      "skip_shape_check": True},  # fmt: skip
                    "transformer": {"raw": [{"name": "Standardize"},
                                            {"name": "ToTensor", "expand_dims": True}]},
                },
            },
        }  # fmt: skip
        (tmp / "cfg.yml").write_text(yaml.safe_dump(cfg))
        times = []
        for _ in range(runs):
            start = time.time()
            out = subprocess.run(
                [sys.executable, "-c", FIRST_FORWARD, "--config", str(tmp / "cfg.yml"),
                 "--overwrite"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            line = next(x for x in out.stderr.splitlines() if x.startswith("FIRST_FORWARD"))
            times.append(float(line.split()[1]) - start)
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    unet = shutil.which("unet") or sys.executable
    prefix = [unet] if unet != sys.executable else [sys.executable, "-m", "unet_core.cli.main"]
    base = wall([sys.executable, "-c", "pass"], args.runs)
    torch_import = wall([sys.executable, "-c", "import torch"], max(3, args.runs // 3))
    print(f"{'command':32s} {'median s':>9s} {'x python -c pass':>17s}")
    print(f"{'python -c pass':32s} {base:9.3f} {1.0:17.2f}")
    label = 'python -c "import torch"'
    print(f"{label:32s} {torch_import:9.3f} {torch_import / base:17.2f}")
    for sub in (["--help"], ["plugins", "list"]):
        t = wall(prefix + sub, args.runs)
        print(f"{'unet ' + ' '.join(sub):32s} {t:9.3f} {t / base:17.2f}")
    t = predict_startup(max(3, args.runs // 2))
    label = "unet predict -> first forward"
    print(f"{label:32s} {t:9.3f} {t / base:17.2f}")
    print(json.dumps({"predict_to_first_forward_s": t, "import_torch_s": torch_import}))


if __name__ == "__main__":
    main()
