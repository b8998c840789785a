"""Instance-level F1 / precision / recall / accuracy at IoU thresholds: the nuclei metric.

The score people report for nuclei segmentation (StarDist's ``matching``, the DSB-2018 and
NeurIPS cell-segmentation challenges): predicted and ground-truth instances are paired one to
one by an optimal (Hungarian) assignment among pairs with IoU >= ``iou_threshold``; paired
instances are true positives, unpaired predictions false positives, unpaired ground truth false
negatives. Not in pytorch-3dunet.

Input: the model's output ``(N, C, *spatial)``. A floating-point prediction is a probability
map: channel ``input_channel`` is thresholded at ``threshold`` and its face-connected components
are the predicted instances (touching nuclei merge, so a model that separates them, e.g. with a
boundary channel, scores better). An integer prediction already is an instance label image.
The target holds instance labels, 0 = background (its last channel with ``use_last_target``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from unet_core.errors import DataError
from unet_plugins.metrics.base import Metric
from unet_plugins.metrics.configs import InstanceF1Config
from unet_plugins.metrics.instance_inputs import (
    check_channel,
    components,
    prediction_array,
    target_labels,
)
from unet_plugins.metrics.matching import (
    MatchScores,
    iou_matrix,
    matched_counts,
    remove_small_instances,
)


class InstanceF1(Metric):
    """Mean over samples (and over IoU thresholds when several) of the chosen detection score."""

    higher_is_better = True

    Config = InstanceF1Config

    def __call__(self, prediction: Any, target: Any) -> float:
        return float(
            np.mean([self.score(truth, seg) for truth, seg in self.samples(prediction, target)])
        )

    def samples(self, prediction: Any, target: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ground-truth labels, predicted labels) of every sample of a batch."""
        cfg = self.config
        who = type(self).__name__
        pred = prediction_array(prediction, who)
        gt = target_labels(target, pred.shape, cfg.use_last_target, who)
        if len(gt) == 0:
            raise DataError(f"{who} got an empty batch (N=0).")
        index = check_channel(cfg.input_channel, pred.shape[1], "input_channel", who)
        return [
            (truth, self.instances(sample[index])) for sample, truth in zip(pred, gt, strict=True)
        ]

    def instances(self, channel: np.ndarray) -> np.ndarray:
        """Predicted instance labels of one channel: components of ``p > threshold`` or as is."""
        if channel.dtype.kind in "iu":
            return channel
        if channel.dtype.kind == "b":
            return components(channel)
        return components(channel > self.config.threshold)

    def score(self, gt: np.ndarray, seg: np.ndarray) -> float:
        """The reported score of one sample (mean over the IoU thresholds)."""
        cfg = self.config
        gt = remove_small_instances(gt, cfg.min_instance_size)
        seg = remove_small_instances(seg, cfg.min_instance_size)
        iou = iou_matrix(gt, seg)
        if iou.shape == (0, 0):
            return cfg.empty_score
        thresholds = (
            cfg.iou_threshold if isinstance(cfg.iou_threshold, list) else [cfg.iou_threshold]
        )
        return float(
            np.mean([getattr(MatchScores(*matched_counts(iou, t)), cfg.report) for t in thresholds])
        )
