"""Soft Dice losses: per-channel Dice (V-Net form), BCE + Dice, and Generalized Dice.

Formulas (reference §4), with p = normalization(logits), t the target, sums over batch and
space per channel c, and masked voxels left out of every sum:

- Dice_c = 2·w_c·Σ(p·t) / max(Σp² + Σt², eps)   (squared denominator, eps 1e-6);
  DiceLoss = 1 − mean_c Dice_c.
- GDL: for one channel use [p, 1−p] and [t, 1−t]; w_c = 1 / max((Σt)², eps) (no gradient);
  GDL = 2·Σ_c w_c·Σ(p·t) / Σ_c max(w_c·Σ(p+t), eps); loss = 1 − GDL.
- BCEDiceLoss = beta·BCE + alpha·DiceLoss(sigmoid).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator

from unet_plugins.losses.base import (
    Loss,
    LossConfig,
    Normalization,
    channel_sum,
    float_tensor,
    normalize,
)
from unet_plugins.losses.bce import bce

NORMALIZATION_HELP = (
    "How logits become probabilities before the Dice: 'sigmoid' (independent channels, "
    "model.final_sigmoid: true), 'softmax' over channels (final_sigmoid: false) or 'none'."
)


class _NormalizationConfig(LossConfig):
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


def per_channel_dice(
    p: torch.Tensor,
    t: torch.Tensor,
    mask: torch.Tensor | None,
    weight: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """(C,) soft Dice with squared denominators; masked voxels are left out of the sums."""
    intersect = channel_sum(p * t, mask)
    if weight is not None:
        intersect = weight.to(intersect) * intersect
    denominator = channel_sum(p * p, mask) + channel_sum(t * t, mask)
    return 2 * (intersect / denominator.clamp(min=eps))


def _check_weight_length(weight: torch.Tensor | None, logits: torch.Tensor) -> None:
    if weight is not None and weight.numel() != logits.shape[1]:
        from unet_core.errors import ConfigError

        raise ConfigError(
            f"loss.weight has {weight.numel()} values but the logits have {logits.shape[1]} "
            "channels (model.out_channels); give one weight per output channel."
        )


class DiceLoss(Loss):
    """1 − mean per-channel soft Dice (V-Net squared denominator), optional class weights.

    With ``ignore_index`` the masked voxels are left out of every sum (the reference zeroed
    their logits, so with sigmoid each still added 0.25 to the denominator).
    """

    class Config(_NormalizationConfig):
        """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape. Final
        activation: model.final_sigmoid true for normalization 'sigmoid', false for 'softmax'."""

        used_weights: ClassVar[frozenset[str]] = frozenset({"weight"})

        weight: list[float] | None = Field(
            None, description="One weight per channel multiplying its Dice intersection."
        )

    target_layout = "masks"
    weight: torch.Tensor | None

    def __init__(self, config: LossConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.register_buffer("weight", float_tensor(self.config.weight))

    @classmethod
    def expected_activation(cls, config: LossConfig) -> str | None:
        norm = config.normalization  # type: ignore[attr-defined]
        return None if norm == "none" else norm

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        _check_weight_length(self.weight, logits)
        p = normalize(logits, self.config.normalization)
        dice = per_channel_dice(p, target, mask, self.weight, self.config.epsilon)
        return 1.0 - dice.mean()


class BCEDiceLoss(Loss):
    """beta·BCEWithLogits + alpha·(1 − mean sigmoid Dice).

    The reference computes BCE + alpha·Dice: its README documents a ``beta`` that the code
    ignores. Here ``beta`` weighs the BCE term as documented (default 1, the reference's
    value). ``pos_weight`` (BCE term) and ``weight`` (Dice term) are optional and unset by
    default, as in the reference, which ignored both for this loss.
    """

    class Config(LossConfig):
        """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape; pair it with
        ``model.final_sigmoid: true``."""

        used_weights: ClassVar[frozenset[str]] = frozenset({"weight", "pos_weight"})

        alpha: float = Field(1.0, ge=0, description="Weight of the Dice term.")
        beta: float = Field(1.0, ge=0, description="Weight of the BCE term.")
        weight: list[float] | None = Field(
            None, description="Per-channel weights of the Dice intersection (null: none)."
        )
        pos_weight: float | list[float] | None = Field(
            None, description="BCE positive-term weight: one number or one per channel."
        )
        epsilon: float = Field(1e-6, gt=0, description="Lower bound of the Dice denominator.")

    target_layout = "masks"
    weight: torch.Tensor | None
    pos_weight: torch.Tensor | None

    def __init__(self, config: LossConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.register_buffer("weight", float_tensor(self.config.weight))
        self.register_buffer("pos_weight", float_tensor(self.config.pos_weight))

    @classmethod
    def expected_activation(cls, config: LossConfig) -> str | None:
        return "sigmoid"

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.config
        _check_weight_length(self.weight, logits)
        dice = per_channel_dice(torch.sigmoid(logits), target, mask, self.weight, cfg.epsilon)
        return cfg.beta * bce(logits, target, mask, self.pos_weight) + cfg.alpha * (
            1.0 - dice.mean()
        )


class GeneralizedDiceLoss(Loss):
    """1 − Generalized Dice (Sudre et al. 2017): classes weighted by 1 / volume².

    A single channel is split into foreground and background, as in the paper. With
    ``ignore_index`` the masked voxels are left out of every sum, class volumes included.
    """

    class Config(_NormalizationConfig):
        """Target: per-channel masks (N, C, Z, Y, X) in [0, 1], the logits' shape. Final
        activation: model.final_sigmoid true for normalization 'sigmoid', false for 'softmax'."""

    target_layout = "masks"

    @classmethod
    def expected_activation(cls, config: LossConfig) -> str | None:
        norm = config.normalization  # type: ignore[attr-defined]
        return None if norm == "none" else norm

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        eps = self.config.epsilon
        p = normalize(logits, self.config.normalization)
        t = target
        if p.shape[1] == 1:
            p = torch.cat((p, 1 - p), dim=1)
            t = torch.cat((t, 1 - t), dim=1)
            mask = None if mask is None else torch.cat((mask, mask), dim=1)
        volume = channel_sum(t, mask)
        w = (1 / (volume * volume).clamp(min=eps)).detach()
        intersect = (channel_sum(p * t, mask) * w).sum()
        denominator = (channel_sum(p + t, mask) * w).clamp(min=eps).sum()
        return 1.0 - 2 * (intersect / denominator)
