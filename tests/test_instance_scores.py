"""InstanceScores: F1 at IoU 0.5 / 0.75 and panoptic quality, by hand on a tiny label volume,
against a brute-force implementation on random ones, and as rows of `unet evaluate`."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from unet_core import registry
from unet_core.cli.main import cli
from unet_core.errors import ConfigError


def _line(spans: dict[int, tuple[int, int]], n: int = 35) -> np.ndarray:
    """A (1, 1, n) label volume with label k on x in [start, stop)."""
    out = np.zeros((1, 1, n), dtype=np.int64)
    for k, (start, stop) in spans.items():
        out[0, 0, start:stop] = k
    return out


# gt A 8 voxels, B 4, C 4 (missed), D 4; predicted a overlaps A 6/10 (IoU 0.6), b = B (1.0),
# d a 3-voxel speck in the background, e covers D and 4 more voxels (IoU 4/8 = 0.5).
GT = _line({1: (0, 8), 2: (12, 16), 3: (17, 21), 4: (26, 30)})
PRED = _line({1: (2, 10), 2: (12, 16), 3: (22, 25), 4: (26, 34)})
EXPECTED = {
    # IoU >= 0.5: a, b, e match; d is a false positive, C a false negative
    "f1@0.5": 2 * 3 / (2 * 3 + 1 + 1),
    "precision@0.5": 3 / 4,
    "recall@0.5": 3 / 4,
    "accuracy@0.5": 3 / 5,
    # IoU >= 0.75: only b
    "f1@0.75": 2 * 1 / (2 * 1 + 3 + 3),
    # panoptic pairs need IoU > 0.5: a (0.6) and b (1.0); fp d, e; fn C, D
    "pq": (0.6 + 1.0) / (2 + 0.5 * 2 + 0.5 * 2),
    "sq": (0.6 + 1.0) / 2,
    "rq": 2 / (2 + 0.5 * 2 + 0.5 * 2),
}


def _scores(pred, gt, **params):
    metric = registry.create("metrics", {"name": "InstanceScores", **params})
    return metric, metric.scores(pred[None, None], gt[None])


def test_hand_computed_f1_at_two_thresholds_and_panoptic_quality():
    metric, scores = _scores(PRED, GT)
    for name, value in EXPECTED.items():
        assert scores[name] == pytest.approx(value), name
    assert scores["pq"] == pytest.approx(scores["sq"] * scores["rq"])
    # as eval_metric it returns the one score named by report
    assert metric(PRED[None, None], GT[None]) == pytest.approx(EXPECTED["f1@0.5"])
    pq = registry.create("metrics", {"name": "InstanceScores", "report": "pq"})
    assert pq(PRED[None, None], GT[None]) == pytest.approx(EXPECTED["pq"])


def test_probabilities_are_thresholded_into_components():
    prob = np.where(PRED > 0, 0.9, 0.1).astype(np.float32)
    _, scores = _scores(prob, GT)
    for name, value in EXPECTED.items():  # every predicted object is its own component
        assert scores[name] == pytest.approx(value), name


def _brute_force(
    gt: np.ndarray, seg: np.ndarray, t: float, strict: bool
) -> tuple[int, int, int, float]:
    """(tp, fp, fn, sum of matched IoU) of pairs with IoU > t (strict) or >= t, t >= 0.5, from
    explicit voxel sets: above 0.5 an object can overlap at most one other that much, so the
    matching needs no optimisation."""
    gts = [set(zip(*np.nonzero(gt == g))) for g in np.unique(gt) if g != 0]
    segs = [set(zip(*np.nonzero(seg == s))) for s in np.unique(seg) if s != 0]
    tp, total = 0, 0.0
    for a in gts:
        for b in segs:
            iou = len(a & b) / len(a | b)
            if iou > t or (not strict and iou == t):
                tp, total = tp + 1, total + iou
    return tp, len(segs) - tp, len(gts) - tp, total


def _blobs(rng: np.random.Generator, shape=(6, 12, 12), n=6) -> np.ndarray:
    out = np.zeros(shape, dtype=np.int64)
    for k in range(1, n + 1):
        z, y, x = (int(rng.integers(0, s - 3)) for s in shape)
        dz, dy, dx = (int(rng.integers(2, 5)) for _ in range(3))
        out[z : z + dz, y : y + dy, x : x + dx] = k
    return out


@pytest.mark.parametrize("seed", range(5))
def test_against_brute_force_on_random_labels(seed):
    rng = np.random.default_rng(seed)
    gt = _blobs(rng)
    seg = gt.copy()
    seg[rng.random(seg.shape) < 0.15] = 0  # erode
    seg = np.where((seg == 0) & (rng.random(seg.shape) < 0.03), 50, seg)  # specks
    seg[_blobs(rng, n=2) > 0] = 77  # a spurious object over whatever was there
    _, scores = _scores(seg, gt, iou_thresholds=[0.75])
    tp, fp, fn, total = _brute_force(gt, seg, 0.75, strict=False)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    assert scores["f1@0.75"] == pytest.approx(f1)
    tp, fp, fn, total = _brute_force(gt, seg, 0.5, strict=True)
    assert scores["pq"] == pytest.approx(total / (tp + fp / 2 + fn / 2) if tp else 0.0)
    assert scores["rq"] == pytest.approx(tp / (tp + fp / 2 + fn / 2) if tp else 0.0)


def test_unknown_report_is_a_config_error_naming_the_choices():
    with pytest.raises(ConfigError) as err:
        registry.create("metrics", {"name": "InstanceScores", "report": "f1@0.9"})
    assert "f1@0.5" in str(err.value) and "pq" in str(err.value)


def test_unet_evaluate_reports_each_score_as_a_row(tmp_path):
    pred, gt = tmp_path / "seg.h5", tmp_path / "gt.h5"
    with h5py.File(pred, "w") as f:
        f["segmentation"] = PRED[0].astype(np.uint16)[None]
    with h5py.File(gt, "w") as f:
        f["label"] = GT[0].astype(np.uint16)[None]
    report = tmp_path / "report.json"
    args = ["evaluate", "--prediction", str(pred), "--dataset", "segmentation"]
    args += ["--ground-truth", str(gt), "--metric", "InstanceScores", "--json", str(report)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    rows = {r["metric"]: r["value"] for r in json.loads(report.read_text())["scores"]}
    for name in ("f1@0.5", "f1@0.75", "pq", "sq", "rq"):
        assert rows[f"InstanceScores {name}"] == pytest.approx(EXPECTED[name]), name
    assert "InstanceScores f1@0.75" in result.output
