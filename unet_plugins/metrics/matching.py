"""Instance matching between a ground-truth and a predicted label image (numpy, CPU).

Conventions shared by the instance metrics:

* label 0 is background; every other value (negative ones included) is an instance. The
  reference relabels with ``np.unique`` and drops whatever label comes first, so with no 0 in
  the image it silently threw away its smallest real instance; here 0 is background only when
  it is there.
* nothing is modified in place: every function returns new arrays.
* IoU matrices exclude background: row ``i`` is gt instance ``i + 1`` and column ``j`` is
  predicted instance ``j + 1`` after :func:`relabel_consecutive`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

#: the IoU thresholds of the Kaggle DSB-2018 / pytorch-3dunet average precision.
AP_IOU_THRESHOLDS = np.linspace(0.50, 0.95, 10)


def relabel_consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """``(ids, n)``: 0 stays 0, the other labels become 1..n in sorted order (int64)."""
    values, inverse = np.unique(labels, return_inverse=True)
    zero = int(np.searchsorted(values, 0))
    has_zero = zero < values.size and values[zero] == 0
    lookup = np.arange(values.size, dtype=np.int64)
    if has_zero:
        lookup[:zero] += 1  # negative labels are instances too
        lookup[zero] = 0
    else:
        lookup += 1  # no background present: every label is an instance
    return lookup[inverse.reshape(labels.shape)], int(values.size - has_zero)


def remove_small_instances(labels: np.ndarray, min_size: int | None) -> np.ndarray:
    """A copy of ``labels`` where instances with fewer than ``min_size`` voxels become 0."""
    if not min_size:
        return labels
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    small = (counts < min_size) & (values != 0)
    if not small.any():
        return labels
    return np.where(small[inverse.reshape(labels.shape)], 0, labels).astype(labels.dtype)


def iou_matrix(gt: np.ndarray, seg: np.ndarray) -> np.ndarray:
    """IoU of every gt instance (rows) with every predicted instance (columns), background out.

    Overlaps come from one contingency table of the two relabelled images.
    """
    if gt.shape != seg.shape:
        raise ValueError(f"label images differ in shape: {gt.shape} vs {seg.shape}")
    gt_ids, n_gt = relabel_consecutive(gt)
    seg_ids, n_seg = relabel_consecutive(seg)
    table = np.bincount(
        (gt_ids * (n_seg + 1) + seg_ids).ravel(), minlength=(n_gt + 1) * (n_seg + 1)
    ).reshape(n_gt + 1, n_seg + 1)
    gt_sizes = table.sum(axis=1, keepdims=True)[1:]
    seg_sizes = table.sum(axis=0, keepdims=True)[:, 1:]
    inter = table[1:, 1:]
    return inter / (gt_sizes + seg_sizes - inter)  # every instance has a voxel: union >= 1


def detection_counts(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """pytorch-3dunet's (tp, fp, fn): a pair is detected when ``IoU > threshold`` (strict).

    tp = gt instances with any detection, fp = predicted instances with none, fn = the rest of
    the gt. Without any detection all three are 0 (every score derived from them is then 0).
    For ``threshold >= 0.5`` a detection is necessarily one-to-one, so this equals an optimal
    matching.
    """
    detected = iou > threshold
    n_gt, n_seg = detected.shape
    if min(n_gt, n_seg) == 0 or not detected.any():
        return 0, 0, 0
    tp = int(np.count_nonzero(detected.any(axis=1)))
    fp = n_seg - int(np.count_nonzero(detected.any(axis=0)))
    return tp, fp, n_gt - tp


def matched_pairs(iou: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(gt rows, predicted columns) of an optimal one-to-one matching with ``IoU >= threshold``.

    The assignment (Hungarian, scipy's ``linear_sum_assignment``) first maximises the number
    of pairs at or above the threshold, then their total IoU, as StarDist's ``matching`` does.
    """
    ok = iou >= threshold
    rows = np.flatnonzero(ok.any(axis=1))
    cols = np.flatnonzero(ok.any(axis=0))
    if not (rows.size and cols.size):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    sub_ok = ok[np.ix_(rows, cols)]
    sub_iou = iou[np.ix_(rows, cols)]
    # a pair above the threshold is worth more than any IoU sum among fewer pairs
    cost = -sub_ok.astype(np.float64) - sub_iou / (2.0 * max(sub_ok.shape))
    r, c = linear_sum_assignment(cost)
    good = sub_ok[r, c]
    return rows[r[good]], cols[c[good]]


def matched_counts(iou: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """(tp, fp, fn) of :func:`matched_pairs`."""
    n_gt, n_seg = iou.shape
    tp = int(matched_pairs(iou, threshold)[0].size)
    return tp, n_seg - tp, n_gt - tp


@dataclass(frozen=True)
class MatchScores:
    """Detection scores from (tp, fp, fn); each is 0 when there is no true positive."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp > 0 else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp > 0 else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp > 0 else 0.0

    @property
    def accuracy(self) -> float:
        """tp / (tp + fp + fn): what the DSB-2018 challenge called precision."""
        return self.tp / (self.tp + self.fp + self.fn) if self.tp > 0 else 0.0


def average_precision(gt: np.ndarray, seg: np.ndarray) -> float:
    """Mean over IoU thresholds 0.50, 0.55, ..., 0.95 of the detection accuracy (strict >)."""
    iou = iou_matrix(gt, seg)
    return float(
        np.mean([MatchScores(*detection_counts(iou, t)).accuracy for t in AP_IOU_THRESHOLDS])
    )


def accuracy_at(gt: np.ndarray, seg: np.ndarray, threshold: float = 0.5) -> float:
    """Detection accuracy tp / (tp + fp + fn) at one IoU threshold (strict >)."""
    return MatchScores(*detection_counts(iou_matrix(gt, seg), threshold)).accuracy
