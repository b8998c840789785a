"""Regression losses on raw model outputs (denoising, distance maps, ...).

All take a real target of the logits' shape (N, C, Z, Y, X) and train a model without final
activation (``model.is_segmentation: false``). They are means over all elements, as torch's
defaults; with ``ignore_index`` the mean runs over the elements whose target differs from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_plugins.losses.base import Loss, masked_mean
from unet_plugins.losses.configs import (
    L1LossConfig,
    MSELossConfig,
    SmoothL1LossConfig,
    WeightedSmoothL1LossConfig,
)


class _RegressionLoss(Loss):
    target_layout = "dense"

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        return masked_mean(self.elementwise(logits, target), mask)


class MSELoss(_RegressionLoss):
    """Mean squared error, ``torch.nn.MSELoss()``."""

    Config = MSELossConfig

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target, reduction="none")


class L1Loss(_RegressionLoss):
    """Mean absolute error, ``torch.nn.L1Loss()``."""

    Config = L1LossConfig

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target, reduction="none")


class SmoothL1Loss(_RegressionLoss):
    """Huber-like loss: 0.5·d²/beta where |d| < beta, else |d| − 0.5·beta (torch's)."""

    Config = SmoothL1LossConfig

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(output, target, reduction="none", beta=self.config.beta)


class WeightedSmoothL1Loss(_RegressionLoss):
    """SmoothL1 (beta 1) whose elements are multiplied by ``initial_weight`` where the target is
    below ``threshold`` (or at/above it with ``apply_below_threshold: false``); the mean."""

    Config = WeightedSmoothL1LossConfig

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        loss = F.smooth_l1_loss(output, target, reduction="none")
        side = target < cfg.threshold if cfg.apply_below_threshold else target >= cfg.threshold
        return torch.where(side, loss * cfg.initial_weight, loss)
