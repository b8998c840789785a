"""Softmax cross-entropy losses on class-index targets.

All three take logits (N, C, Z, Y, X) and an integer target (N, Z, Y, X) of class indices in
[0, C), and train a softmax output (``model.final_sigmoid: false``). ``ignore_index`` voxels
are skipped natively (default -100, torch's, when unset).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_plugins.losses.base import Loss
from unet_plugins.losses.configs import (
    CrossEntropyLossConfig,
    PixelWiseCrossEntropyLossConfig,
    WeightedCrossEntropyLossConfig,
)

TORCH_IGNORE = -100


class _CrossEntropyBase(Loss):
    target_layout = "indices"
    native_ignore = True
    tensor_params = ("weight",)

    def ignore_value(self) -> int | None:
        return self.torch_ignore_index()

    def torch_ignore_index(self) -> int:
        """``ignore_index`` for torch's cross-entropy (its default -100 when unset)."""
        ii: int | None = self.config.ignore_index
        return TORCH_IGNORE if ii is None else ii


class CrossEntropyLoss(_CrossEntropyBase):
    """``torch.nn.CrossEntropyLoss`` (mean; with class weights the weighted mean)."""

    Config = CrossEntropyLossConfig

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        return F.cross_entropy(
            logits, target, weight=self.class_weight(logits), ignore_index=self.torch_ignore_index()
        )


class WeightedCrossEntropyLoss(_CrossEntropyBase):
    """Cross-entropy with batch-adaptive class weights (Sudre et al. 2017, "WCE").

    With p = softmax(logits), class c gets weight Σ(1 − p_c) / Σp_c over every voxel of the
    batch (no gradient), so classes the network predicts rarely weigh more. ``weight``, unset by
    default, multiplies these weights (the reference's pre-2020 behaviour; 1.9.6 ignored it).
    """

    Config = WeightedCrossEntropyLossConfig

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        with torch.no_grad():
            p = torch.softmax(logits, dim=1)
            dims = [0, *range(2, p.dim())]
            class_weight = (1.0 - p).sum(dim=dims) / p.sum(dim=dims)
            fixed = self.class_weight(logits)
            if fixed is not None:
                class_weight = class_weight * fixed
        return F.cross_entropy(
            logits, target, weight=class_weight, ignore_index=self.torch_ignore_index()
        )


class PixelWiseCrossEntropyLoss(_CrossEntropyBase):
    """Cross-entropy weighted per voxel by a weight map from the dataset (``weight`` dataset).

    loss = Σ_v w_v · cw[t_v] · CE_v / #counted voxels, with w the weight map (N, Z, Y, X), cw
    the optional class weights (``weight`` key) and CE_v = −log softmax(logits)[t_v]; voxels
    equal to ``ignore_index`` are left out of the sum and the count. The reference removed
    this loss in 2025 (commit ef99754); its last version averaged over the one-hot expanded
    (N, C, Z, Y, X) tensor, i.e. its value was this one divided by C, and it mishandled
    ``ignore_index``. Set ``loaders.weight_internal_path`` so that the dataset loads the map.
    """

    Config = PixelWiseCrossEntropyLossConfig

    needs_weight = True

    def ignore_value(self) -> int | None:
        return self.config.ignore_index

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        assert weight is not None  # guaranteed by targets.check_weight
        ignore = self.config.ignore_index
        per_voxel = F.cross_entropy(
            logits,
            target,
            weight=self.class_weight(logits),
            ignore_index=TORCH_IGNORE if ignore is None else ignore,
            reduction="none",
        )
        weighted = per_voxel * weight
        if ignore is None:
            return weighted.mean()
        counted = (target != ignore).sum().clamp(min=1)
        return weighted.sum() / counted.to(weighted.dtype)
