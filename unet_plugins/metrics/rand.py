"""Adapted Rand error (SNEMI3D) between the target's instance labels and segmentations of the
prediction, via ``skimage.metrics.adapted_rand_error`` on the CPU, as in the reference.

Per sample: the ground truth is one target channel (see ``use_last_target``) with
``ignore_index`` mapped to 0 (label 0 is not scored, scikit-image's default); the prediction is
turned into one or more segmentations and the lowest error among them counts. The batch score
is the mean over samples. A sample whose ground truth holds a single label (or nothing) scores
0.0, as in the reference, which skipped it to avoid a division by zero; so does any other sample
whose error is undefined (no two scored voxels share a label in either image), where the reference
returned NaN.

The reference's three failing real-data tests (two adapted Rand, one average precision) are not
a scikit-image change: they crop ``[64:128]`` along z of the 32-slice test volume, so the target
is empty; the reference then indexes its first voxel (``IndexError``) or builds a contingency
table from empty index arrays (scipy ``ValueError``). An empty sample scores 0.0 here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import Field, model_validator
from skimage.metrics import adapted_rand_error

from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig
from unet_plugins.metrics.base import NO_EFFECT, Metric
from unet_plugins.metrics.instance_inputs import (
    check_channel,
    components,
    prediction_array,
    target_labels,
)
from unet_plugins.metrics.matching import relabel_consecutive

DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


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


class _RandConfig(ComponentConfig):
    use_last_target: bool = Field(
        False,
        description=(
            "Take the ground-truth labels from the target's last channel (true) or its first "
            "(false). A target without a channel axis (N, *spatial) is used as it is."
        ),
    )
    ignore_index: int | None = Field(
        None, description="Target label treated as background 0 (not scored); null: none."
    )


class AdaptedRandError(Metric):
    """Adapted Rand error where each prediction channel already is a segmentation (labels)."""

    higher_is_better = False
    Config = _RandConfig

    def __call__(self, prediction: Any, target: Any) -> float:
        name = type(self).__name__
        pred = prediction_array(prediction, name)
        gt = target_labels(target, pred.shape, self.config.use_last_target, name)
        if self.config.ignore_index is not None:
            gt = np.where(gt == self.config.ignore_index, 0, gt)
        if len(gt) == 0:
            raise DataError(f"{name} got an empty batch (N=0).")
        scores = []
        for sample_pred, sample_gt in zip(pred, gt, strict=True):
            if sample_gt.size == 0 or np.all(sample_gt == sample_gt.flat[0]):
                scores.append(0.0)  # a single label: nothing to score (as the reference)
                continue
            errors = [
                e
                for s in self.segmentations(sample_pred)
                if (e := rand_error(sample_gt, s)) is not None
            ]
            scores.append(min(errors) if errors else 0.0)
        return float(np.mean(scores))

    def segmentations(self, sample: np.ndarray) -> Iterator[np.ndarray]:
        """The label images to score for one sample ``(C, *spatial)``: its channels."""
        if sample.dtype.kind == "f" and not np.array_equal(sample, np.round(sample)):
            raise DataError(
                f"{type(self).__name__} scores prediction channels that already are label "
                "images, but got non-integer values (probabilities?). For boundary or "
                "foreground probabilities use BoundaryAdaptedRandError or "
                "GenericAdaptedRandError, which threshold them first."
            )
        for channel in sample:
            yield channel.astype(np.int64, copy=False)


class _ThresholdedRandConfig(_RandConfig):
    use_last_target: bool = Field(
        True,
        description=(
            "Take the ground-truth labels from the target's last channel (true: the layout of "
            "append_label: true) or its first. A target without a channel axis is used as is."
        ),
    )
    thresholds: list[float] = Field(
        default_factory=lambda: list(DEFAULT_THRESHOLDS),
        min_length=1,
        description="Probability thresholds tried; the lowest error over all of them counts.",
    )


class BoundaryAdaptedRandError(AdaptedRandError):
    """Adapted Rand error of boundary probability maps.

    For each used channel and threshold: ``mask = p > threshold``, inverted when
    ``invert_pmaps`` (boundaries become background), then face-connected components. Voxels
    left at 0 (the boundaries) form one segment for scikit-image, as in the reference.
    """

    class Config(_ThresholdedRandConfig):
        input_channel: int | None = Field(
            None, description="Only this prediction channel (null: every channel)."
        )
        invert_pmaps: bool = Field(
            True,
            description="Treat above-threshold voxels as boundary (background) before labelling.",
        )
        save_plots: bool = Field(False, description=NO_EFFECT)
        plots_dir: str = Field(".", description=NO_EFFECT)
        threshold: float | None = Field(
            None, description=NO_EFFECT + " (the thresholds come from `thresholds`)."
        )
        use_first_input: bool | None = Field(
            None, description=NO_EFFECT + " (use `input_channel: 0` to score channel 0 only)."
        )

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

    class Config(_ThresholdedRandConfig):
        input_channels: list[int] = Field(
            min_length=1, description="Prediction channels to segment (required)."
        )
        invert_channels: list[int] = Field(
            default_factory=list,
            description="Channels of input_channels used as 1 - p (e.g. boundary maps).",
        )

        @model_validator(mode="after")
        def _inverted_are_used(self) -> GenericAdaptedRandError.Config:
            stray = [c for c in self.invert_channels if c not in self.input_channels]
            if stray:
                raise ValueError(
                    f"invert_channels {stray} are not in input_channels {self.input_channels}, "
                    "so they would have no effect; list only channels you also score"
                )
            return self

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
