"""The losses' parameters and their config-time checks, importable without torch.

``unet config validate`` reads these through the Deferred entries of
:mod:`unet_plugins.losses.specs`; the loss classes use the same models as their ``Config``.
Each config also says which model output its loss trains (:meth:`LossConfig.expected_activation`)
so that the loss-vs-model check (:func:`check_loss_config`) needs neither torch nor the class.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from unet_core.interfaces import ComponentConfig

Normalization = Literal["sigmoid", "softmax", "none"]
Layout = Literal["masks", "indices", "dense"]

#: ``pos_weight`` as the reference needs it per channel: a nested list whose shape broadcasts
#: against the logits, e.g. (C, 1, 1, 1) against (N, C, Z, Y, X); up to the logits' five axes.
NestedWeights = (
    list[list[float]]
    | list[list[list[float]]]
    | list[list[list[list[float]]]]
    | list[list[list[list[list[float]]]]]
)
PosWeight = float | list[float] | NestedWeights
POS_WEIGHT_HELP = (
    "Weight of the positive term: one number, one per output channel ([w1, w2, ...]), or a "
    "nested list that broadcasts against the logits (N, C, Z, Y, X) as the reference "
    "writes it, e.g. [[[[w1]]], [[[w2]]]] (shape (C, 1, 1, 1)). >1 raises recall on rare "
    "foreground. null: 1."
)


def nested_shape(value: Any) -> tuple[int, ...]:
    """The shape of a (nested) list of numbers; ValueError if it is ragged."""
    if not isinstance(value, list):
        return ()
    shapes = {nested_shape(item) for item in value}
    if len(shapes) > 1:
        raise ValueError("a nested pos_weight must be rectangular (every inner list as long)")
    return (len(value), *(shapes.pop() if shapes else ()))


class LossConfig(ComponentConfig):
    """Keys every loss accepts (the reference reads them from every ``loss`` section)."""

    #: which of ``weight``/``pos_weight`` the loss uses; others may only be null.
    used_weights: ClassVar[frozenset[str]] = frozenset()
    #: the fewest output channels the loss works with (2 for class-index targets).
    min_classes: ClassVar[int] = 1

    ignore_index: int | None = Field(
        None,
        description=(
            "Target value whose voxels are excluded from the loss (null: none). Cross-entropy "
            "losses skip those voxels natively; the others average/sum over the remaining "
            "voxels (the reference zeroed their logits instead)."
        ),
    )
    skip_last_target: bool = Field(
        False,
        description=(
            "Drop the last target channel before the loss (e.g. the instance labels appended "
            "by append_label: true for the evaluation metric)."
        ),
    )
    squeeze_channel: bool = Field(
        False,
        description=(
            "After skip_last_target, drop a singleton target channel axis: (N,1,Z,Y,X) -> "
            "(N,Z,Y,X), for cross-entropy losses fed a channel-carrying label."
        ),
    )
    weight: list[float] | None = Field(
        None, description="Not used by this loss (accepted as null only)."
    )
    pos_weight: PosWeight | None = Field(
        None, description="Not used by this loss (accepted as null only)."
    )

    @field_validator("pos_weight")
    @classmethod
    def _rectangular(cls, value: PosWeight | None) -> PosWeight | None:
        nested_shape(value)
        return value

    @model_validator(mode="after")
    def _unused_weights(self) -> LossConfig:
        for key in ("weight", "pos_weight"):
            if getattr(self, key) is not None and key not in self.used_weights:
                raise ValueError(
                    f"`{key}` has no effect on this loss (pytorch-3dunet silently ignored it); "
                    f"remove it or choose a loss that uses {key}"
                )
        return self

    def expected_activation(self) -> str | None:
        """The model output this loss trains ("sigmoid"/"softmax"/"none"), None if any."""
        return None


class _SigmoidConfig(LossConfig):
    def expected_activation(self) -> str | None:
        return "sigmoid"


class _NormalizedConfig(LossConfig):
    """A loss whose ``normalization`` key says which output it trains."""

    def expected_activation(self) -> str | None:
        norm: str = getattr(self, "normalization")  # noqa: B009 - declared by subclasses
        return None if norm == "none" else norm


# -- binary cross-entropy ----------------------------------------------------------------------
class BCEWithLogitsLossConfig(_SigmoidConfig):
    """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape; pair it with
    ``model.final_sigmoid: true``."""

    used_weights: ClassVar[frozenset[str]] = frozenset({"pos_weight"})

    pos_weight: PosWeight | None = Field(None, description=POS_WEIGHT_HELP)


# -- cross-entropy -----------------------------------------------------------------------------
CLASS_WEIGHT_HELP = "One weight per class (output channel) for the per-voxel loss (null: 1)."


class _ClassIndexConfig(LossConfig):
    """Softmax losses on class-index targets: at least two output channels."""

    min_classes: ClassVar[int] = 2

    def expected_activation(self) -> str | None:
        return "softmax"


class CrossEntropyLossConfig(_ClassIndexConfig):
    """Target: class indices (N, Z, Y, X) int64 (label ToTensor expand_dims: false, dtype:
    int64); pair it with ``model.final_sigmoid: false`` (softmax)."""

    used_weights: ClassVar[frozenset[str]] = frozenset({"weight"})

    weight: list[float] | None = Field(None, description=CLASS_WEIGHT_HELP)


class WeightedCrossEntropyLossConfig(_ClassIndexConfig):
    """Target: class indices (N, Z, Y, X) int64 (label ToTensor expand_dims: false, dtype:
    int64); pair it with ``model.final_sigmoid: false`` (softmax)."""

    used_weights: ClassVar[frozenset[str]] = frozenset({"weight"})

    weight: list[float] | None = Field(
        None, description="Fixed per-class factors multiplying the adaptive weights."
    )


class PixelWiseCrossEntropyLossConfig(_ClassIndexConfig):
    """Target: class indices (N, Z, Y, X) int64 plus a per-voxel weight map of the same
    shape (loaders.weight_internal_path); pair it with ``model.final_sigmoid: false``."""

    used_weights: ClassVar[frozenset[str]] = frozenset({"weight"})

    weight: list[float] | None = Field(None, description=CLASS_WEIGHT_HELP)


# -- Dice --------------------------------------------------------------------------------------
NORMALIZATION_HELP = (
    "How logits become probabilities before the Dice: 'sigmoid' (independent channels, "
    "model.final_sigmoid: true), 'softmax' over channels (final_sigmoid: false) or 'none'."
)


class _NormalizationConfig(_NormalizedConfig):
    normalization: Normalization = Field("sigmoid", description=NORMALIZATION_HELP)
    epsilon: float = Field(
        1e-6, gt=0, description="Lower bound of the denominators (reference: fixed 1e-6)."
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_sigmoid_normalization(cls, data: Any) -> Any:
        """Configs from before 2020 used ``sigmoid_normalization: true|false``."""
        if isinstance(data, dict) and "sigmoid_normalization" in data:
            data = dict(data)
            flag = data.pop("sigmoid_normalization")
            if "normalization" in data:
                raise ValueError(
                    "give `normalization` only; `sigmoid_normalization` is its older spelling"
                )
            warnings.warn(
                "loss key `sigmoid_normalization` is deprecated; use normalization: "
                f"{'sigmoid' if flag else 'softmax'}",
                FutureWarning,
                stacklevel=2,
            )
            data["normalization"] = "sigmoid" if flag else "softmax"
        return data


class DiceLossConfig(_NormalizationConfig):
    """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape. Final
    activation: model.final_sigmoid true for normalization 'sigmoid', false for 'softmax'."""

    used_weights: ClassVar[frozenset[str]] = frozenset({"weight"})

    weight: list[float] | None = Field(
        None, description="One weight per channel multiplying its Dice intersection."
    )


class BCEDiceLossConfig(_SigmoidConfig):
    """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape; pair it with
    ``model.final_sigmoid: true``."""

    used_weights: ClassVar[frozenset[str]] = frozenset({"weight", "pos_weight"})

    alpha: float = Field(1.0, ge=0, description="Weight of the Dice term.")
    beta: float = Field(1.0, ge=0, description="Weight of the BCE term.")
    weight: list[float] | None = Field(
        None, description="Per-channel weights of the Dice intersection (null: none)."
    )
    pos_weight: PosWeight | None = Field(
        None, description="BCE term's pos_weight (see BCEWithLogitsLoss). " + POS_WEIGHT_HELP
    )
    epsilon: float = Field(1e-6, gt=0, description="Lower bound of the Dice denominator.")


class GeneralizedDiceLossConfig(_NormalizationConfig):
    """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape. Final
    activation: model.final_sigmoid true for normalization 'sigmoid', false for 'softmax'."""


# -- imbalance ---------------------------------------------------------------------------------
MASKS_SIGMOID = (
    "Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape; pair it with "
    "``model.final_sigmoid: true``."
)


class FocalLossConfig(_SigmoidConfig):
    __doc__ = MASKS_SIGMOID

    gamma: float = Field(2.0, ge=0, description="Focusing exponent γ (Lin et al.: 2; 0 gives BCE).")
    alpha: float | None = Field(
        0.25,
        ge=0,
        le=1,
        description=(
            "Weight α of the positives, 1−α of the negatives (Lin et al.: 0.25); null "
            "disables the weighting."
        ),
    )


class TverskyLossConfig(_NormalizedConfig):
    """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape. Final
    activation: model.final_sigmoid true for normalization 'sigmoid', false for 'softmax'."""

    alpha: float = Field(
        0.3, ge=0, description="Weight of false positives Σp·(1−t) (Salehi et al.: 0.3)."
    )
    beta: float = Field(
        0.7, ge=0, description="Weight of false negatives Σ(1−p)·t (Salehi et al.: 0.7)."
    )
    gamma: float = Field(
        1.0,
        gt=0,
        description="Exponent on (1 − TI): 1 plain Tversky, 0.75 Focal Tversky (Abraham).",
    )
    normalization: Normalization = Field(
        "sigmoid",
        description="Logits to probabilities: 'sigmoid', 'softmax' over channels, 'none'.",
    )
    epsilon: float = Field(1e-6, gt=0, description="Lower bound of the denominator.")


# -- regression --------------------------------------------------------------------------------
DENSE_DOC = (
    "Target: real values of the logits' shape (N, C, Z, Y, X) (label ToTensor expand_dims: "
    "true for single-channel volumes); pair it with ``model.is_segmentation: false``."
)


class _DenseConfig(LossConfig):
    def expected_activation(self) -> str | None:
        return "none"


class MSELossConfig(_DenseConfig):
    __doc__ = DENSE_DOC


class L1LossConfig(_DenseConfig):
    __doc__ = DENSE_DOC


class SmoothL1LossConfig(_DenseConfig):
    __doc__ = DENSE_DOC

    beta: float = Field(
        1.0, ge=0, description="Where the loss turns from quadratic to linear (torch: 1.0)."
    )


class WeightedSmoothL1LossConfig(_DenseConfig):
    __doc__ = DENSE_DOC

    threshold: float = Field(..., description="Target value that splits the two regimes.")
    initial_weight: float = Field(
        ..., description="Factor for the elements on the chosen side of the threshold."
    )
    apply_below_threshold: bool = Field(
        True, description="true: weigh target < threshold; false: target >= threshold."
    )
