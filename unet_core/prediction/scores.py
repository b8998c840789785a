"""The predictor's ``performance_metric`` (``dice`` / ``mean_iou``), computed as meant.

The reference cast float probabilities to integers (so every p < 1 became 0), iterated over
z-slices of 3D segmentations and divided by zero on empty classes (its §12.12). Here the
prediction is first turned into a segmentation (p > 0.5 for one channel, argmax otherwise;
per-channel masks when the ground truth has one mask per channel), and a class that is empty
in both prediction and ground truth scores 1 (nothing to find, nothing found) instead of NaN.
Counts are accumulated block by block, so the streaming predictor never loads the volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_core.errors import ConfigError, DataError

METRICS = ("dice", "mean_iou")


def segment(probabilities: np.ndarray) -> np.ndarray:
    """(C,Z,Y,X) probabilities -> (Z,Y,X) labels: p > 0.5 for C == 1, argmax otherwise."""
    if probabilities.shape[0] == 1:
        return (probabilities[0] > 0.5).astype(np.uint16)  # type: ignore[no-any-return]
    return np.argmax(probabilities, axis=0).astype(np.uint16)  # type: ignore[no-any-return]


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(
            f"predictor.performance_metric: {metric!r} is not supported; expected one of "
            f"{', '.join(METRICS)} (for other metrics run `unet evaluate`)."
        )


class ScoreCounter:
    """Per-class |pred|, |true| and |pred & true| summed over blocks of one volume."""

    def __init__(self, metric: str, n_classes: int, where: str = "the input file") -> None:
        check_metric(metric)
        self.metric = metric
        self.n_classes = n_classes
        self.where = where
        self.counts: np.ndarray | None = None  # (classes, 3)

    def _pairs(
        self, labels: np.ndarray, gt: np.ndarray, masks: np.ndarray | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        if gt.ndim == 4:  # one binary mask per channel
            channels = gt.shape[0]
            chosen: list[np.ndarray]
            if masks is not None and len(masks) == channels:
                chosen = list(masks)
            elif channels == 1:
                chosen = [labels > 0]
            elif self.n_classes == channels:
                chosen = [labels == c for c in range(channels)]
            else:
                raise DataError(
                    f"The ground truth in {self.where} has {channels} channels but the model "
                    f"predicts {self.n_classes}; expected one ground-truth mask per output "
                    "channel (check predictor.gt_internal_path)."
                )
            return [(m, t > 0) for m, t in zip(chosen, gt)]
        if self.n_classes <= 1:
            return [(labels > 0, gt > 0)]
        return [(labels == c, gt == c) for c in range(1, self.n_classes)]

    def update(self, labels: np.ndarray, gt: np.ndarray, masks: np.ndarray | None = None) -> None:
        """Add one block: ``labels`` (Z,Y,X) segmentation, ``gt`` (Z,Y,X) or (C,Z,Y,X).

        ``masks`` (C,Z,Y,X) are per-channel predictions (p > 0.5), used against a
        ground truth with one mask per channel.
        """
        if tuple(gt.shape[-3:]) != tuple(labels.shape[-3:]):
            raise DataError(
                f"The ground truth in {self.where} has shape {gt.shape}, which does not match "
                f"the prediction's spatial shape {labels.shape}; expected the label volume of "
                "the same image (check predictor.gt_internal_path)."
            )
        counts = np.array(
            [
                [int(p.sum()), int(t.sum()), int(np.logical_and(p, t).sum())]
                for p, t in self._pairs(labels, gt, masks)
            ],
            dtype=np.int64,
        )
        self.counts = counts if self.counts is None else self.counts + counts

    def result(self) -> dict[str, Any]:
        """``{"metric", "per_class", "mean"}``; empty-in-both classes count as 1."""
        per_class: list[float] = []
        for pred, true, inter in self.counts if self.counts is not None else []:
            if self.metric == "dice":
                total = pred + true
                per_class.append(1.0 if total == 0 else float(2.0 * inter / total))
            else:
                union = pred + true - inter
                per_class.append(1.0 if union == 0 else float(inter / union))
        mean = float(np.mean(per_class)) if per_class else float("nan")
        return {"metric": self.metric, "per_class": per_class, "mean": mean}


def score(
    metric: str, labels: np.ndarray, gt: np.ndarray, n_classes: int, where: str = "the input"
) -> dict[str, Any]:
    """Score a whole segmentation at once (see :class:`ScoreCounter`)."""
    counter = ScoreCounter(metric, n_classes, where)
    counter.update(labels, gt)
    return counter.result()
