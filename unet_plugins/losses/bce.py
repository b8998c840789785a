"""Binary cross-entropy on logits, one independent sigmoid per output channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_plugins.losses.base import Loss, masked_mean, per_channel
from unet_plugins.losses.configs import BCEWithLogitsLossConfig


class BCEWithLogitsLoss(Loss):
    """Mean binary cross-entropy of sigmoid(logits) against per-channel masks.

    Equals ``torch.nn.BCEWithLogitsLoss`` as the reference builds it. With ``ignore_index`` the
    mean runs over the unmasked voxels only (the reference zeroed the masked logits, which
    still added log 2 per masked voxel). A list ``pos_weight`` weighs the positives of each
    *channel*; the reference passed it to torch unchanged, which broadcasts it over the last
    spatial axis (X) instead, so only a single number worked there.
    """

    Config = BCEWithLogitsLossConfig

    target_layout = "masks"
    tensor_params = ("pos_weight",)
    pos_weight: torch.Tensor | None

    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        return bce(logits, target, mask, self.pos_weight)


def bce(
    logits: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    """Masked mean BCE-with-logits; ``pos_weight`` is a scalar or per-channel tensor."""
    pw = None if pos_weight is None else per_channel(pos_weight, logits, "pos_weight")
    if mask is None:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    return masked_mean(per_voxel, mask)
