"""Average precision of instance segmentations obtained from the prediction (CPU, numpy).

Per sample: the ground truth is one target channel (``use_last_target``), the prediction gives
one or more candidate segmentations (thresholds, channels), instances smaller than
``min_instance_size`` are removed from both, and the best candidate's score counts; the batch
score is the mean over samples.

``metric: ap`` is the DSB-2018 average precision: the mean, over IoU thresholds
0.50, 0.55, ..., 0.95, of tp / (tp + fp + fn) with a match when IoU > threshold (strict).
``metric: acc`` is that accuracy at 0.5 alone. A sample without any match scores 0. Label 0 is
background only where it occurs (the reference dropped the smallest label of a label image
without 0, e.g. a dense cell segmentation).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from unet_core.errors import DataError
from unet_plugins.metrics.base import Metric
from unet_plugins.metrics.configs import (
    BlobsAveragePrecisionConfig,
    BlobsBoundaryAveragePrecisionConfig,
    BoundaryAveragePrecisionConfig,
    GenericAveragePrecisionConfig,
)
from unet_plugins.metrics.instance_inputs import (
    check_channel,
    components,
    label_channels,
    prediction_array,
    target_labels,
)
from unet_plugins.metrics.matching import accuracy_at, average_precision, remove_small_instances


class GenericAveragePrecision(Metric):
    """Average precision where each prediction channel already is an instance label image.

    The reference's class of this name is an abstract base (calling it raises
    NotImplementedError); here it scores label images directly, e.g. the output of a
    post-processing step. A tuple of prediction heads is joined along the channel axis.
    """

    higher_is_better = True

    Config = GenericAveragePrecisionConfig

    def __call__(self, prediction: Any, target: Any) -> float:
        name = type(self).__name__
        pred = prediction_array(prediction, name)
        gt = target_labels(target, pred.shape, self.config.use_last_target, name)
        if len(gt) == 0:
            raise DataError(f"{name} got an empty batch (N=0).")
        size = self.config.min_instance_size
        scores = []
        for sample_pred, sample_gt in zip(pred, gt, strict=True):
            truth = remove_small_instances(sample_gt, size)
            scores.append(
                max(
                    self._score(truth, remove_small_instances(seg, size))
                    for seg in self.segmentations(sample_pred)
                )
            )
        return float(np.mean(scores))

    def _score(self, gt: np.ndarray, seg: np.ndarray) -> float:
        if self.config.metric == "ap":
            return average_precision(gt, seg)
        return accuracy_at(gt, seg, 0.5)

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        """Candidate label images for one sample ``(C, *spatial)``: here its channels."""
        return label_channels(
            sample,
            type(self).__name__,
            "BlobsAveragePrecision (foreground), BoundaryAveragePrecision (boundaries) or "
            "BlobsBoundaryAveragePrecision",
        )


class BlobsAveragePrecision(GenericAveragePrecision):
    """Foreground probabilities: components of ``p[input_channel] > threshold``, best threshold."""

    Config = BlobsAveragePrecisionConfig

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        index = check_channel(
            self.config.input_channel, len(sample), "input_channel", type(self).__name__
        )
        for threshold in self.config.thresholds:
            yield components(sample[index] > threshold)


class BlobsBoundaryAveragePrecision(GenericAveragePrecision):
    """Foreground (channel 0) and boundary (channel 1): components of ``p0 - p1 > threshold``."""

    Config = BlobsBoundaryAveragePrecisionConfig

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        if len(sample) < 2:
            raise DataError(
                f"BlobsBoundaryAveragePrecision needs a foreground (channel 0) and a boundary "
                f"(channel 1) prediction, got {len(sample)} channel(s); set model.out_channels "
                "to 2 or use BlobsAveragePrecision."
            )
        difference = sample[0] - sample[1]
        for threshold in self.config.thresholds:
            yield components(difference > threshold)


class BoundaryAveragePrecision(GenericAveragePrecision):
    """Boundary probabilities: components of ``NOT(p[input_channel] > threshold)``."""

    Config = BoundaryAveragePrecisionConfig

    def _score(self, gt: np.ndarray, seg: np.ndarray) -> float:
        return average_precision(gt, seg)

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        index = check_channel(
            self.config.input_channel, len(sample), "input_channel", type(self).__name__
        )
        for threshold in self.config.thresholds:
            yield components(~(sample[index] > threshold))
