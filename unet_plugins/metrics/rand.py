"""Adapted Rand error (SNEMI3D) between the target's instance labels and segmentations of the
prediction, via ``skimage.metrics.adapted_rand_error`` on the CPU, as in the reference.

Per sample: the ground truth is one target channel (see ``use_last_target``) with
``ignore_index`` mapped to 0 (label 0 is not scored, scikit-image's default); the prediction is
turned into one or more segmentations and the lowest error among them counts. The batch score
is the mean over samples.

Degenerate samples: a target without labelled voxels (all background) leaves nothing to score,
so its error is undefined (scikit-image: 0/0). By default (``empty_target: skip``) such a
sample is left out of the batch mean, and a batch with no defined sample scores NaN, which
validation leaves out and ``unet evaluate`` refuses. The reference instead scored every
sample whose target holds a single label as 0.0, i.e. perfect, whatever was predicted;
``empty_target: reference`` keeps that. A target holding one object label (no background) is
well defined and scored by default.

The reference's three failing real-data tests (two adapted Rand, one average precision) are not
a scikit-image change: they crop ``[64:128]`` along z of the 32-slice test volume, so the target
is empty; the reference then indexes its first voxel (``IndexError``) or builds a contingency
table from empty index arrays (scipy ``ValueError``). An empty sample is undefined here
(0.0 with ``empty_target: reference``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from skimage.metrics import adapted_rand_error

from unet_core.errors import DataError
from unet_plugins.metrics.base import Metric
from unet_plugins.metrics.configs import (
    AdaptedRandErrorConfig,
    BoundaryAdaptedRandErrorConfig,
    GenericAdaptedRandErrorConfig,
)
from unet_plugins.metrics.instance_inputs import (
    check_channel,
    components,
    label_channels,
    prediction_array,
    target_labels,
)
from unet_plugins.metrics.matching import relabel_consecutive


def _compact(labels: np.ndarray) -> np.ndarray:
    """Labels fit for a contingency table (non-negative, not huge); 0 stays 0, others map 1:1."""
    if labels.size and (labels.min() < 0 or labels.max() > labels.size):
        return relabel_consecutive(labels)[0]
    return labels


def rand_error(gt: np.ndarray, seg: np.ndarray) -> float | None:
    """skimage's adapted Rand error of ``seg`` against ``gt``; None when it is undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        error = float(adapted_rand_error(_compact(gt), _compact(seg))[0])
    return error if np.isfinite(error) else None


class AdaptedRandError(Metric):
    """Adapted Rand error where each prediction channel already is a segmentation (labels)."""

    higher_is_better = False
    Config = AdaptedRandErrorConfig

    def __call__(self, prediction: Any, target: Any) -> float:
        name = type(self).__name__
        pred = prediction_array(prediction, name)
        gt = target_labels(target, pred.shape, self.config.use_last_target, name)
        if self.config.ignore_index is not None:
            gt = np.where(gt == self.config.ignore_index, 0, gt)
        if len(gt) == 0:
            raise DataError(f"{name} got an empty batch (N=0).")
        reference = self.config.empty_target == "reference"
        scores = []
        for sample_pred, sample_gt in zip(pred, gt, strict=True):
            if reference and (sample_gt.size == 0 or np.all(sample_gt == sample_gt.flat[0])):
                scores.append(0.0)  # a single label: "perfect", as the reference
                continue
            if not np.any(sample_gt):
                continue  # no labelled voxel: undefined, left out
            errors = [
                e
                for s in self.segmentations(sample_pred)
                if (e := rand_error(sample_gt, s)) is not None
            ]
            if errors or reference:
                scores.append(min(errors) if errors else 0.0)
        return float(np.mean(scores)) if scores else float("nan")

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        """The label images to score for one sample ``(C, *spatial)``: its channels."""
        return label_channels(
            sample,
            type(self).__name__,
            "BoundaryAdaptedRandError (boundaries) or GenericAdaptedRandError (foreground)",
        )


class BoundaryAdaptedRandError(AdaptedRandError):
    """Adapted Rand error of boundary probability maps.

    For each used channel and threshold: ``mask = p > threshold``, inverted when
    ``invert_pmaps`` (boundaries become background), then face-connected components. Voxels
    left at 0 (the boundaries) form one segment for scikit-image, as in the reference.
    """

    Config = BoundaryAdaptedRandErrorConfig

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        cfg = self.config
        channels: Any = sample
        if cfg.input_channel is not None:
            index = check_channel(
                cfg.input_channel, len(sample), "input_channel", type(self).__name__
            )
            channels = sample[index : index + 1]
        for channel in channels:
            for threshold in cfg.thresholds:
                mask = channel > threshold
                yield components(~mask if cfg.invert_pmaps else mask)


class GenericAdaptedRandError(AdaptedRandError):
    """Adapted Rand error of chosen foreground channels: label ``p > threshold`` (``1 - p`` for
    channels in ``invert_channels``) for each channel and threshold; the lowest error counts."""

    Config = GenericAdaptedRandErrorConfig

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        cfg = self.config
        for index in cfg.input_channels:
            channel = sample[
                check_channel(index, len(sample), "input_channels", type(self).__name__)
            ]
            if index in cfg.invert_channels:
                channel = 1 - channel
            for threshold in cfg.thresholds:
                yield components(channel > threshold)
