"""Regression losses on raw model outputs (denoising, distance maps, ...).

All take a real target of the logits' shape (N, C, Z, Y, X) and train a model without final
activation (``model.is_segmentation: false``). They are means over all elements, as torch's
defaults; with ``ignore_index`` the mean runs over the elements whose target differs from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from unet_plugins.losses.base import Loss, LossConfig, masked_mean

DENSE_DOC = (
    "Target: real values of the logits' shape (N, C, Z, Y, X) (label ToTensor expand_dims: "
    "true for single-channel volumes); pair it with ``model.is_segmentation: false``."
)


class _RegressionLoss(Loss):
    target_layout = "dense"

    @classmethod
    def expected_activation(cls, config: LossConfig) -> str | None:
        return "none"

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

    class Config(LossConfig):
        __doc__ = DENSE_DOC

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(output, target, reduction="none")


class L1Loss(_RegressionLoss):
    """Mean absolute error, ``torch.nn.L1Loss()``."""

    class Config(LossConfig):
        __doc__ = DENSE_DOC

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(output, target, reduction="none")


class SmoothL1Loss(_RegressionLoss):
    """Huber-like loss: 0.5·d²/beta where |d| < beta, else |d| − 0.5·beta (torch's)."""

    class Config(LossConfig):
        __doc__ = DENSE_DOC

        beta: float = Field(
            1.0, ge=0, description="Where the loss turns from quadratic to linear (torch: 1.0)."
        )

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(output, target, reduction="none", beta=self.config.beta)


class WeightedSmoothL1Loss(_RegressionLoss):
    """SmoothL1 (beta 1) whose elements are multiplied by ``initial_weight`` where the target is
    below ``threshold`` (or at/above it with ``apply_below_threshold: false``); the mean."""

    class Config(LossConfig):
        __doc__ = DENSE_DOC

        threshold: float = Field(..., description="Target value that splits the two regimes.")
        initial_weight: float = Field(
            ..., description="Factor for the elements on the chosen side of the threshold."
        )
        apply_below_threshold: bool = Field(
            True, description="true: weigh target < threshold; false: target >= threshold."
        )

    def elementwise(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        loss = F.smooth_l1_loss(output, target, reduction="none")
        side = target < cfg.threshold if cfg.apply_below_threshold else target >= cfg.threshold
        return torch.where(side, loss * cfg.initial_weight, loss)
