"""Binary cross-entropy on logits, one independent sigmoid per output channel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unet_core.errors import ConfigError
from unet_plugins.losses.base import Loss, masked_mean, per_channel
from unet_plugins.losses.configs import BCEWithLogitsLossConfig


class BCEWithLogitsLoss(Loss):
    """Mean binary cross-entropy of sigmoid(logits) against per-channel masks.

    Equals ``torch.nn.BCEWithLogitsLoss`` as the reference builds it. With ``ignore_index`` the
    mean runs over the unmasked voxels only (the reference zeroed the masked logits, which
    still added log 2 per masked voxel). A flat list ``pos_weight`` weighs the positives of
    each *channel*; the reference passed it to torch unchanged, which broadcasts it over the last
    spatial axis (X) instead. A nested list is what the reference needs for per-channel weights,
    e.g. shape (C, 1, 1, 1): it goes to torch unchanged, so every shape that broadcasts against
    the logits gives the reference's value.
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
    """Masked mean BCE-with-logits; ``pos_weight`` is a scalar, per-channel or broadcast tensor."""
    pw = None if pos_weight is None else _broadcast_pos_weight(pos_weight, logits)
    if mask is None:
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    per_voxel = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    return masked_mean(per_voxel, mask)


def _broadcast_pos_weight(pos_weight: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """A flat list is per channel; a nested one is used as torch broadcasts it (the reference)."""
    if pos_weight.dim() < 2:
        return per_channel(pos_weight, logits, "pos_weight")
    pw = pos_weight.to(device=logits.device, dtype=logits.dtype)
    try:
        fits = torch.broadcast_shapes(pw.shape, logits.shape) == logits.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ConfigError(
            f"loss.pos_weight has shape {tuple(pw.shape)}, which does not broadcast against "
            f"the logits {tuple(logits.shape)} (N, C, spatial...); write one value per channel "
            "as [[[[w1]]], [[[w2]]], ...] (shape (C, 1, 1, 1)) or as a flat list [w1, w2, ...]."
        )
    return pw
