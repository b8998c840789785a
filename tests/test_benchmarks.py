"""The benchmark scripts still run (tiny budgets; their figures are not asserted, only that
each prints its result line): a broken benchmark is found here, not when someone needs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, timeout: float = 300) -> list[dict]:
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_train_benchmark_bare_step_with_forwarded_options():
    (t1,) = _run(
        "benchmarks/train.py",
        "--skip-t2",
        "--t1-iterations=2",
        "--f-maps=8",
        "--patch=32",
        "--channels-last=on",
    )
    assert t1["workload"] == "T1" and t1["s_per_it"] > 0


@pytest.mark.slow
def test_quality_benchmark_on_the_real_ovule_volume(sample_data, tmp_path):
    (result,) = _run("benchmarks/quality.py", "--iterations=2", "--task=ovule", f"--out={tmp_path}")
    assert result["task"] == "ovule boundaries" and 0 <= result["adapted_rand_error"] <= 1
    assert result["cells_true"] == 26
    # re-segmenting the stored prediction with the same post-processing gives the same scores
    # and leaves the run's files as they were
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    (again,) = _run("benchmarks/quality.py", "--task=ovule", "--rescore", str(tmp_path))
    assert again["rescored"].startswith(str(tmp_path))
    for key in ("adapted_rand_error", "cells_found", "cells_true", "best_val_dice", "seed"):
        assert again[key] == result[key], key
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_instances_benchmark_scores_its_segmentations(sample_data, tmp_path):
    rows = _run(
        "benchmarks/instances.py",
        "--iterations=1",
        "--model=instances",
        "--seed=3",
        "--tta=none,flips",
        "--set=trainer.validate_after_iters=1",
        f"--out={tmp_path}",
    )
    assert [r["model"] for r in rows] == ["2 channels (fg + distance)"] * 4
    assert [r["tta"] for r in rows] == ["none", "none", "flips", "flips"]
    assert {r["seed"] for r in rows} == {3}
    for row in rows:
        assert row["objects_true"] == 32
        assert 0 <= row["pq"] <= row["rq"] <= 1 and 0 <= row["f1@0.75"] <= row["f1@0.5"] <= 1
        # the error counts are the metric's own matching: F1@0.5 = 2 tp / (2 tp + fn + fp)
        tp = row["objects_true"] - row["fn"]
        assert tp == row["objects_found"] - row["fp"]
        assert row["f1@0.5"] == pytest.approx(2 * tp / (2 * tp + row["fn"] + row["fp"]), abs=1e-4)
        assert 0 <= row["fn_at_faces"] <= row["fn"] and 0 <= row["fp_at_faces"] <= row["fp"]
    # one training, predicted once per TTA setting (each into its own folder)
    predictions = tmp_path / "instances" / "predictions"
    assert sorted(p.name for p in predictions.iterdir()) == ["tta-flips", "tta-none"]
    (logged,) = (tmp_path / "instances" / "checkpoints" / "logs").glob("*/config.yml")
    config = yaml.safe_load(logged.read_text())
    assert config["manual_seed"] == 3 and config["trainer"]["validate_after_iters"] == 1
    # the scenario's schedule (0.3x at the 2nd and 3rd validation)
    scenario = ROOT / "examples" / "configs" / "3DUnet_nuclei_instances" / "train_config.yml"
    assert config["lr_scheduler"] == yaml.safe_load(scenario.read_text())["lr_scheduler"]
    assert config["lr_scheduler"]["name"] == "MultiStepLR"


def test_gpu_throughput_benchmark_runs_its_rows_on_the_cpu():
    """The GPU script (issue 17's patch-voxels/s) is checked here, before a GPU session needs it:
    its pipelined and sequential fast-mode runs must agree exactly."""
    rows = _run("benchmarks/gpu_throughput.py", "--smoke", "--device=cpu", "--variants=eager")
    kinds = [r["row"] for r in rows]
    assert kinds == ["device", "forward", "predict", "predict", "agreement"]
    forward = rows[1]
    assert forward["tile"] == 16 and forward["M_patch_voxels_per_s"] > 0
    pipelined, sequential = rows[2], rows[3]
    assert (pipelined["pipelined"], sequential["pipelined"]) == (True, False)
    assert pipelined["tiles"] == sequential["tiles"] > 1 and pipelined["redundancy"] > 1
    assert rows[4]["max_abs_difference"] == 0.0


def test_annotation_density_counts_unlabelled_bright_voxels(tmp_path):
    import h5py
    import numpy as np

    raw = np.zeros((40, 60, 40), np.uint8)
    label = np.zeros(raw.shape, np.uint8)
    raw[10:30, 10:30, 10:30] = 200  # a nucleus whose label covers only half of it
    label[10:20, 10:30, 10:30] = 1
    raw[10:30, 35:55, 10:30] = 200  # a nucleus left wholly unlabelled
    path = tmp_path / "volume.h5"
    with h5py.File(path, "w") as f:
        f["raw"], f["label"] = raw, label
    (row,) = _run("benchmarks/annotation_density.py", str(path), timeout=60)
    assert row["file"] == "volume.h5"
    assert row["labelled_share"] == pytest.approx(4000 / raw.size, abs=1e-3)
    # 3 of the 4 bright halves carry no label; the labelled half is bright
    assert row["unlabelled_bright_all"] == pytest.approx(0.75, abs=0.03)
    assert row["labelled_not_bright"] < 0.05
    assert (row["bright_regions_500"], row["of_them_under_10pc_labelled"]) == (2, 1)
