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

import torch

from unet_plugins.losses.base import Loss, channel_sum, normalize
from unet_plugins.losses.bce import bce
from unet_plugins.losses.configs import BCEDiceLossConfig, DiceLossConfig, GeneralizedDiceLossConfig


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


class DiceLoss(Loss):
    """1 − mean per-channel soft Dice (V-Net squared denominator), optional class weights.

    With ``ignore_index`` the masked voxels are left out of every sum (the reference zeroed
    their logits, so with sigmoid each still added 0.25 to the denominator).
    """

    Config = DiceLossConfig

    target_layout = "masks"
    tensor_params = ("weight",)
    weight: torch.Tensor | None

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        p = normalize(logits, self.config.normalization)
        dice = per_channel_dice(p, target, mask, self.class_weight(logits), self.config.epsilon)
        return 1.0 - dice.mean()


class BCEDiceLoss(Loss):
    """beta·BCEWithLogits + alpha·(1 − mean sigmoid Dice).

    The reference computes BCE + alpha·Dice: its README documents a ``beta`` that the code
    ignores. Here ``beta`` weighs the BCE term as documented (default 1, the reference's
    value). ``pos_weight`` (BCE term) and ``weight`` (Dice term) are optional and unset by
    default, as in the reference, which ignored both for this loss.
    """

    Config = BCEDiceLossConfig

    target_layout = "masks"
    tensor_params = ("weight", "pos_weight")
    weight: torch.Tensor | None
    pos_weight: torch.Tensor | None

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.config
        class_weight = self.class_weight(logits)
        dice = per_channel_dice(torch.sigmoid(logits), target, mask, class_weight, cfg.epsilon)
        return cfg.beta * bce(logits, target, mask, self.pos_weight) + cfg.alpha * (
            1.0 - dice.mean()
        )


class GeneralizedDiceLoss(Loss):
    """1 − Generalized Dice (Sudre et al. 2017): classes weighted by 1 / volume².

    A single channel is split into foreground and background, as in the paper. With
    ``ignore_index`` the masked voxels are left out of every sum, class volumes included.
    """

    Config = GeneralizedDiceLossConfig

    target_layout = "masks"

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
