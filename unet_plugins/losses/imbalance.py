"""Losses for extreme foreground/background imbalance (beyond the reference).

- FocalLoss (Lin et al. 2017, "Focal Loss for Dense Object Detection"): with p = sigmoid(x),
  p_t = p·t + (1−p)·(1−t) and α_t = α·t + (1−α)·(1−t),
  FL = −α_t·(1 − p_t)^γ·log(p_t), averaged over the elements. γ down-weighs the many easy
  voxels; the paper's defaults are γ = 2 and α = 0.25 (α applies to the positives, so 0.25
  *lowers* their weight: it balances the stronger focusing of γ, it is not an inverse class
  frequency). γ = 0 and α = null give plain BCE. Same as torchvision.ops.sigmoid_focal_loss.
- TverskyLoss (Salehi et al. 2017, "Tversky loss function for image segmentation using 3D
  fully convolutional deep networks"): per channel
  TI_c = Σp·t / max(Σp·t + α·Σp·(1−t) + β·Σ(1−p)·t, eps), loss = mean_c (1 − TI_c)^γ.
  α weighs false positives, β false negatives; the paper's α = 0.3, β = 0.7 favours recall of
  small structures. α = β = 0.5 is the (linear-denominator) soft Dice, α = β = 1 the soft
  Jaccard. γ = 1 is the plain Tversky loss; γ = 0.75 is the Focal Tversky loss of Abraham &
  Khan 2019 (their 1/γ with γ = 4/3), which focuses on hard, low-TI channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_plugins.losses.base import Loss, channel_sum, masked_mean, normalize
from unet_plugins.losses.configs import FocalLossConfig, TverskyLossConfig


class FocalLoss(Loss):
    """Sigmoid focal loss (Lin et al. 2017): BCE scaled by (1 − p_t)^gamma and alpha_t."""

    Config = FocalLossConfig

    target_layout = "masks"

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.config
        ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        loss = ce * (1 - p_t) ** cfg.gamma
        if cfg.alpha is not None:
            loss = (cfg.alpha * target + (1 - cfg.alpha) * (1 - target)) * loss
        return masked_mean(loss, mask)


class TverskyLoss(Loss):
    """1 − Tversky index per channel (Salehi et al. 2017), optionally focal (Abraham & Khan)."""

    Config = TverskyLossConfig

    target_layout = "masks"

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.config
        p = normalize(logits, cfg.normalization)
        tp = channel_sum(p * target, mask)
        fp = channel_sum(p * (1 - target), mask)
        fn = channel_sum((1 - p) * target, mask)
        index = tp / (tp + cfg.alpha * fp + cfg.beta * fn).clamp(min=cfg.epsilon)
        loss = (1 - index).clamp(min=0)
        if cfg.gamma != 1.0:
            loss = loss**cfg.gamma
        return loss.mean()
