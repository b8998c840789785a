"""Workload S: wall time of `unet --help` and `unet plugins list` vs `python -c pass`.

Prints the median of N runs of each and the ratio to a bare interpreter start. Run:
    python benchmarks/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
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


if __name__ == "__main__":
    main()
