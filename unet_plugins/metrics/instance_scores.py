"""Every instance score at once: F1 / precision / recall / accuracy at several IoU thresholds and
panoptic quality (PQ = SQ x RQ, Kirillov et al. 2019). Not in pytorch-3dunet.

``unet evaluate`` reports each of them as its own row (the metric's ``scores``); as
``eval_metric`` the metric returns the one named by ``report``. Instances are read and matched
as by :class:`~unet_plugins.metrics.instance_f1.InstanceF1` (optimal one-to-one matching,
``IoU >= t``). Panoptic quality pairs instances with ``IoU > 0.5`` (such a pair is unique):
SQ is the mean IoU of the pairs, RQ = tp / (tp + fp/2 + fn/2) (the F1 at IoU > 0.5), and
PQ = sum of the pairs' IoU / (tp + fp/2 + fn/2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_plugins.metrics.configs import InstanceScoresConfig
from unet_plugins.metrics.instance_f1 import InstanceF1
from unet_plugins.metrics.matching import (
    MatchScores,
    iou_matrix,
    matched_pairs,
    remove_small_instances,
)


def panoptic_quality(iou: np.ndarray) -> dict[str, float]:
    """``{"pq", "sq", "rq"}`` of a gt x prediction IoU matrix (0 each without a pair)."""
    rows, cols = matched_pairs(iou, 0.5)
    pair_iou = iou[rows, cols]
    pair_iou = pair_iou[pair_iou > 0.5]
    tp = pair_iou.size
    n_gt, n_seg = iou.shape
    if tp == 0:
        return {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    denominator = tp + 0.5 * (n_seg - tp) + 0.5 * (n_gt - tp)
    return {
        "pq": float(pair_iou.sum() / denominator),
        "sq": float(pair_iou.mean()),
        "rq": float(tp / denominator),
    }


def instance_scores(iou: np.ndarray, thresholds: list[float]) -> dict[str, float]:
    """Detection scores at each threshold (``f1@0.5`` ...) and panoptic quality."""
    out: dict[str, float] = {}
    for t in thresholds:
        rows, _ = matched_pairs(iou, t)
        counts = MatchScores(rows.size, iou.shape[1] - rows.size, iou.shape[0] - rows.size)
        for kind in ("f1", "precision", "recall", "accuracy"):
            out[f"{kind}@{t:g}"] = float(getattr(counts, kind))
    return out | panoptic_quality(iou)


class InstanceScores(InstanceF1):
    """Mean over samples of every instance score; ``report`` is the eval_metric value."""

    Config = InstanceScoresConfig

    def scores(self, prediction: Any, target: Any) -> dict[str, float]:
        """Every score (``config.score_names()``), each the mean over the batch's samples."""
        per_sample = [self.sample_scores(t, s) for t, s in self.samples(prediction, target)]
        return {k: float(np.mean([p[k] for p in per_sample])) for k in per_sample[0]}

    def score(self, gt: np.ndarray, seg: np.ndarray) -> float:
        return self.sample_scores(gt, seg)[self.config.reported]

    def sample_scores(self, gt: np.ndarray, seg: np.ndarray) -> dict[str, float]:
        cfg = self.config
        gt = remove_small_instances(gt, cfg.min_instance_size)
        seg = remove_small_instances(seg, cfg.min_instance_size)
        iou = iou_matrix(gt, seg)
        if iou.shape == (0, 0):
            return dict.fromkeys(cfg.score_names(), float(cfg.empty_score))
        return instance_scores(iou, cfg.iou_thresholds)
