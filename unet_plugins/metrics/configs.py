"""The metrics' parameters, importable without torch, scipy or scikit-image.

``unet config validate`` reads these through the Deferred entries of
:mod:`unet_plugins.metrics.specs`; the metric classes use the same models as their ``Config``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from unet_core.interfaces import ComponentConfig

#: description used by every key that the reference's configs pass but nothing reads.
NO_EFFECT = "Accepted for compatibility with pytorch-3dunet configs; no effect."


# -- overlap -------------------------------------------------------------------------------
def excluded_channels(n: int, start: int, skip: list[int]) -> set[int]:
    """The channels of an ``n``-channel prediction a score leaves out: those below ``start``
    (the background) and those in ``skip`` (negative indices count from the end)."""
    return {c % n for c in skip if -n <= c < n} | set(range(min(start, n)))


def check_skip_channels(metric: str) -> Any:
    """The config-time check of ``metric``'s ``skip_channels`` against model.out_channels."""

    def check(config: Any, model_spec: Any) -> list[str]:
        from unet_plugins.losses.config_checks import model_setting

        n = model_setting(model_spec, "out_channels", None)
        skip = list(getattr(config, "skip_channels", []) or [])
        if not isinstance(n, int) or n < 1 or len(excluded_channels(n, 0, skip)) < n:
            return []
        return [
            f"{metric}: skip_channels {skip} leaves out every channel of the model's {n} "
            "(model.out_channels), so there would be nothing to score; keep at least one."
        ]

    return check


class DiceCoefficientConfig(ComponentConfig):
    epsilon: float = Field(
        1e-6, gt=0, description="Lower bound of the Dice denominator (avoids 0/0)."
    )
    empty_score: Literal["one", "reference"] = Field(
        "one",
        description=(
            "Score of a channel empty in both prediction and target (sum p^2 + sum t^2 < "
            "epsilon): one = 1.0, nothing to find and nothing found (MeanIoU's and MONAI's "
            "convention); reference = 0.0, as pytorch-3dunet."
        ),
    )
    ignore_index: float | None = Field(
        None,
        description=(
            "Target value whose voxels are left out of every sum (null: none). The "
            "reference accepts this key and ignores it."
        ),
    )
    skip_channels: list[int] = Field(
        default_factory=list,
        description=(
            "Channel indices left out of the mean over channels (e.g. [0] for a "
            "background channel). The reference accepts this key and ignores it."
        ),
    )


class MeanIoUConfig(ComponentConfig):
    skip_background: bool = Field(
        True,
        description=(
            "Leave class 0 out of the mean (class-index targets only; with per-channel "
            "mask targets every channel counts, as in the reference)."
        ),
    )
    ignore_index: float | None = Field(
        None,
        description=(
            "Target value whose voxels are left out of both prediction and target counts "
            "(null: none). The reference accepts this key and ignores it."
        ),
    )
    skip_channels: list[int] = Field(
        default_factory=list,
        description=(
            "Class/channel indices left out of the mean. The reference accepts this key "
            "and ignores it."
        ),
    )


# -- regression ----------------------------------------------------------------------------
class MSEConfig(ComponentConfig):
    ignore_index: float | None = Field(
        None,
        description=(
            "Target value whose voxels are left out (null: none). The reference accepts "
            "this key and ignores it."
        ),
    )


class PSNRConfig(ComponentConfig):
    data_range: float | None = Field(
        None,
        gt=0,
        description=(
            "Peak-to-peak range of the signal, e.g. 255 for 8-bit images or max - min of "
            "the normalised data. null: inferred from the target's dtype (the reference)."
        ),
    )
    ignore_index: float | None = Field(
        None,
        description=(
            "Target value whose voxels are left out (null: none). The reference accepts "
            "this key and ignores it."
        ),
    )


# -- adapted Rand error --------------------------------------------------------------------
DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


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
    empty_target: Literal["skip", "reference"] = Field(
        "skip",
        description=(
            "A sample whose error is undefined (its target has no labelled voxels): skip = "
            "left out of the batch mean, and a batch with no defined sample scores NaN "
            "(validation leaves it out, `unet evaluate` refuses it); reference = every "
            "sample whose target holds a single label scores 0.0 (perfect), as pytorch-3dunet."
        ),
    )


AdaptedRandErrorConfig = _RandConfig


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


class BoundaryAdaptedRandErrorConfig(_ThresholdedRandConfig):
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


class GenericAdaptedRandErrorConfig(_ThresholdedRandConfig):
    input_channels: list[int] = Field(
        min_length=1, description="Prediction channels to segment (required)."
    )
    invert_channels: list[int] = Field(
        default_factory=list,
        description="Channels of input_channels used as 1 - p (e.g. boundary maps).",
    )

    @model_validator(mode="after")
    def _inverted_are_used(self) -> GenericAdaptedRandErrorConfig:
        stray = [c for c in self.invert_channels if c not in self.input_channels]
        if stray:
            raise ValueError(
                f"invert_channels {stray} are not in input_channels {self.input_channels}, "
                "so they would have no effect; list only channels you also score"
            )
        return self


# -- average precision ---------------------------------------------------------------------
ScoreName = Literal["ap", "acc"]


class _APConfig(ComponentConfig):
    min_instance_size: int | None = Field(
        None,
        ge=0,
        description=(
            "Instances with fewer voxels are removed (set to 0) from the target and from each "
            "candidate segmentation before matching; null: keep all. Inputs are not modified."
        ),
    )
    use_last_target: bool = Field(
        True,
        description=(
            "Take the ground-truth labels from the target's last channel (the layout of "
            "append_label: true) or its first. A target without a channel axis is used as is."
        ),
    )
    metric: ScoreName = Field(
        "ap",
        description="'ap': mean accuracy over IoU 0.50..0.95; 'acc': accuracy at IoU 0.5.",
    )


class GenericAveragePrecisionConfig(_APConfig):
    use_last_target: bool = Field(
        False,
        description=(
            "Take the ground-truth labels from the target's last channel (true) or its "
            "first (false). A target without a channel axis is used as is."
        ),
    )


class BlobsAveragePrecisionConfig(_APConfig):
    thresholds: list[float] = Field(
        default_factory=lambda: [0.4, 0.5, 0.6, 0.7, 0.8],
        min_length=1,
        description="Foreground thresholds tried; the best score counts.",
    )
    input_channel: int = Field(0, description="Prediction channel holding the foreground.")


class BlobsBoundaryAveragePrecisionConfig(_APConfig):
    thresholds: list[float] = Field(
        default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7],
        min_length=1,
        description="Thresholds of foreground minus boundary tried; the best score counts.",
    )


class BoundaryAveragePrecisionConfig(_APConfig):
    thresholds: list[float] = Field(
        default_factory=lambda: [0.3, 0.4, 0.5, 0.6],
        min_length=1,
        description="Boundary thresholds tried; the best score counts.",
    )
    input_channel: int = Field(0, description="Prediction channel holding the boundaries.")
    metric: ScoreName = Field(
        "ap", description=NO_EFFECT + " The score is always the average precision ('ap')."
    )


# -- instance F1 ---------------------------------------------------------------------------
Report = Literal["f1", "precision", "recall", "accuracy"]


class _InstanceInputConfig(ComponentConfig):
    """How the instance metrics read a prediction and a target."""

    threshold: float = Field(
        0.5, description="Probability above which a voxel is foreground (float input)."
    )
    input_channel: int = Field(0, description="Prediction channel holding the foreground.")
    min_instance_size: int | None = Field(
        None,
        ge=0,
        description=(
            "Instances with fewer voxels are dropped from prediction and target before "
            "matching (null: keep all)."
        ),
    )
    use_last_target: bool = Field(
        True,
        description=(
            "Take the instance labels from the target's last channel (the layout of "
            "BlobsToMask append_label: true) or its first. A target without a channel "
            "axis is used as is."
        ),
    )
    empty_score: float = Field(
        1.0,
        ge=0,
        le=1,
        description=(
            "Score of a sample with no instance in either target or prediction (nothing "
            "to find, nothing found). StarDist reports 0 there, which penalises correctly "
            "empty patches when scores are averaged."
        ),
    )


class InstanceF1Config(_InstanceInputConfig):
    iou_threshold: float | list[float] = Field(
        0.5,
        description=(
            "IoU a predicted instance needs with a ground-truth instance to match it "
            "(>=). A list averages the score over its thresholds, e.g. "
            "[0.5, 0.55, ..., 0.95]."
        ),
    )
    report: Report = Field(
        "f1",
        description=(
            "Score returned: 'f1' = 2tp/(2tp+fp+fn), 'precision' = tp/(tp+fp), "
            "'recall' = tp/(tp+fn), 'accuracy' = tp/(tp+fp+fn)."
        ),
    )

    @field_validator("iou_threshold")
    @classmethod
    def _thresholds_in_range(cls, value: float | list[float]) -> float | list[float]:
        values = value if isinstance(value, list) else [value]
        if not values or any(not 0 < v <= 1 for v in values):
            raise ValueError(f"every IoU threshold must be in (0, 1], got {value}")
        return value


# -- instance scores and panoptic quality ---------------------------------------------------
PANOPTIC = ("pq", "sq", "rq")


class InstanceScoresConfig(_InstanceInputConfig):
    iou_thresholds: list[float] = Field(
        default_factory=lambda: [0.5, 0.75],
        description="IoU thresholds (>=) at which f1, precision, recall and accuracy are "
        "reported, as f1@0.5, f1@0.75, ...",
    )
    report: str | None = Field(
        None,
        description="The one score used as eval_metric: 'KIND@T' for KIND in f1, precision, "
        "recall, accuracy and T in iou_thresholds, or pq, sq, rq (panoptic quality, "
        "segmentation quality, recognition quality; pairs need IoU > 0.5). Default: f1 at "
        "the first of iou_thresholds.",
    )

    @field_validator("iou_thresholds")
    @classmethod
    def _thresholds(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < v <= 1 for v in value):
            raise ValueError(f"every IoU threshold must be in (0, 1], got {value}")
        return value

    def score_names(self) -> list[str]:
        """Every score :class:`InstanceScores` reports, in order."""
        kinds = ("f1", "precision", "recall", "accuracy")
        return [f"{k}@{t:g}" for t in self.iou_thresholds for k in kinds] + list(PANOPTIC)

    @property
    def reported(self) -> str:
        """The name of the score returned as eval_metric."""
        return self.report or f"f1@{self.iou_thresholds[0]:g}"

    @model_validator(mode="after")
    def _report_known(self) -> InstanceScoresConfig:
        if self.reported not in self.score_names():
            raise ValueError(
                f"report {self.report!r} is not one of {', '.join(self.score_names())}"
            )
        return self
