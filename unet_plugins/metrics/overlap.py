"""Overlap scores computed in torch on the prediction's device: Dice and mean IoU.

No host round trip: the result is a 0-d float32 tensor on the input's device. With their
defaults both give pytorch-3dunet's numbers; ``ignore_index`` and ``skip_channels`` (which the
reference accepts and silently ignores) do what their names say.
"""

from __future__ import annotations

from typing import Any

import torch

from unet_core.errors import ConfigError, DataError
from unet_plugins.metrics.base import Metric, as_tensor
from unet_plugins.metrics.configs import (
    DiceCoefficientConfig,
    MeanIoUConfig,
    excluded_channels,
)

#: MeanIoU's smoothing term: an empty prediction of an empty class scores 1, as in the reference.
IOU_EPSILON = 1e-8


def _mean_over_kept(values: torch.Tensor, start: int, skip: list[int], metric: str) -> torch.Tensor:
    """Mean over the last axis of ``values`` without channels < ``start`` and in ``skip``.

    Done with a weight vector (no tensor indexing) so that it never waits for the device.
    """
    n = values.shape[-1]
    skipped = excluded_channels(n, start, skip)
    if len(skipped) >= n:
        raise ConfigError(
            f"{metric}: every channel of the {n}-channel prediction is excluded "
            f"(skip_channels={skip}"
            + (", skip_background=true" if start else "")
            + "); keep at least one channel."
        )
    if not skipped:
        return values.mean(dim=-1)
    channel = torch.arange(n, device=values.device)
    weight = torch.ones(n, dtype=values.dtype, device=values.device)
    for c in skipped:  # comparisons, not item assignment: that would copy from the host
        weight = weight * (channel != c)
    return (values * weight).sum(dim=-1) / (n - len(skipped))


class DiceCoefficient(Metric):
    """Mean over channels of the soft per-channel Dice ``2 sum(p t) / (sum p^2 + sum t^2)``.

    Computed on the probabilities (not thresholded), pooled over the batch and space per
    channel, as the Dice loss does. The target has the prediction's shape ``(N, C, ...)``
    (per-channel masks). A channel empty in both (``sum p^2 + sum t^2 < epsilon``) scores 1,
    like MeanIoU; the reference gave 0 (``empty_score: reference`` keeps that).
    """

    higher_is_better = True

    Config = DiceCoefficientConfig

    def __call__(self, prediction: Any, target: Any) -> torch.Tensor:
        cfg = self.config
        with torch.no_grad():
            p = as_tensor(prediction, "prediction")
            t = as_tensor(target, "target", p.device)
            if p.shape != t.shape:
                raise DataError(
                    f"DiceCoefficient needs a target with the prediction's shape "
                    f"{tuple(p.shape)} (per-channel masks), got {tuple(t.shape)}. For a label "
                    "image of class indices use MeanIoU, or turn the labels into masks with a "
                    "label transform (e.g. BlobsToMask) and ToTensor(expand_dims: true) for a "
                    "single channel."
                )
            n_ch = p.shape[1]
            p = p.float().transpose(0, 1).reshape(n_ch, -1)
            t_flat = t.transpose(0, 1).reshape(n_ch, -1)
            t_f = t_flat.float()
            if cfg.ignore_index is not None:
                keep = (t_flat != cfg.ignore_index).float()
                p = p * keep
                t_f = t_f * keep
            intersect = (p * t_f).sum(-1)
            denominator = (p * p).sum(-1) + (t_f * t_f).sum(-1)
            dice = 2 * (intersect / denominator.clamp(min=cfg.epsilon))
            if cfg.empty_score == "one":  # nothing to find, nothing found
                dice = torch.where(denominator < cfg.epsilon, torch.ones_like(dice), dice)
            return _mean_over_kept(dice, 0, cfg.skip_channels, "DiceCoefficient")


class MeanIoU(Metric):
    """Intersection over union per class (or channel), averaged per sample, then over the batch.

    Two target layouts, told apart by the number of dimensions:

    * class indices ``(N, *spatial)``: the prediction is ``argmax`` over channels and class
      ``c`` is compared with ``target == c`` for every class (from 1 with
      ``skip_background``). Target values outside ``[0, C)`` belong to no class.
    * masks ``(N, C, *spatial)``: channel ``c`` is ``prediction > 0.5`` vs ``target != 0``
      (``target > 0.5`` for a float target); every channel counts, skip_background does not
      apply.

    IoU = (|A and B| + 1e-8) / (|A or B| + 1e-8): a class absent from both scores 1.
    """

    higher_is_better = True

    Config = MeanIoUConfig

    def __call__(self, prediction: Any, target: Any) -> torch.Tensor:
        with torch.no_grad():
            p = as_tensor(prediction, "prediction")
            t = as_tensor(target, "target", p.device)
            if p.dim() < 3:
                raise DataError(
                    f"MeanIoU needs a prediction (N, C, *spatial), got shape {tuple(p.shape)}."
                )
            if t.dim() == p.dim() - 1 and t.shape[1:] == p.shape[2:] and t.shape[0] == p.shape[0]:
                iou, start = self._class_iou(p, t), int(self.config.skip_background)
            elif t.shape == p.shape:
                iou, start = self._channel_iou(p, t), 0
            else:
                raise DataError(
                    f"MeanIoU needs a target of class indices (N, *spatial) = "
                    f"{(p.shape[0], *p.shape[2:])} or per-channel masks of the prediction's "
                    f"shape {tuple(p.shape)}, got {tuple(t.shape)}. Check the label "
                    "transforms (ToTensor expand_dims) and model.out_channels."
                )
            return _mean_over_kept(iou, start, self.config.skip_channels, "MeanIoU").mean()

    def _valid(self, t: torch.Tensor) -> torch.Tensor | None:
        ignore = self.config.ignore_index
        return None if ignore is None else t != ignore

    def _class_iou(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(N, C) IoU from one confusion count per sample: a single pass, no host sync."""
        n, c = p.shape[0], p.shape[1]
        pred = p.max(dim=1).indices.reshape(n, -1)  # = argmax (first max), much faster on CPU
        flat = t.reshape(n, -1)
        valid = self._valid(flat)
        if flat.is_floating_point():
            flat = flat.trunc()
        in_range = (flat >= 0) & (flat < c)
        true = torch.where(in_range, flat, c).long()  # c = "no class"
        bins = n * (c + 1) * c
        sample = torch.arange(n, device=p.device).unsqueeze(1)
        index = (sample * (c + 1) + true) * c + pred
        if valid is not None:
            index = torch.where(valid, index, bins)  # ignored voxels go to a dropped bin
        # scatter_add into a fixed-size table: bincount would wait for the device to size it
        counts = torch.zeros(bins + 1, dtype=torch.int64, device=p.device)
        flat_index = index.reshape(-1)
        ones = torch.ones(1, dtype=torch.int64, device=p.device).expand(flat_index.numel())
        counts.scatter_add_(0, flat_index, ones)
        counts = counts[:bins].reshape(n, c + 1, c)
        inter = torch.diagonal(counts[:, :c, :], dim1=1, dim2=2)
        union = counts.sum(dim=1) + counts[:, :c, :].sum(dim=2) - inter
        return (inter.float() + IOU_EPSILON) / (union.float() + IOU_EPSILON)

    def _channel_iou(self, p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n, c = p.shape[0], p.shape[1]
        pred = (p > 0.5).reshape(n, c, -1)
        flat = t.reshape(n, c, -1)
        true = flat > 0.5 if flat.is_floating_point() else flat != 0
        inter = pred & true
        union = pred | true
        valid = self._valid(flat)
        if valid is not None:
            inter, union = inter & valid, union & valid
        return (inter.sum(-1).float() + IOU_EPSILON) / (union.sum(-1).float() + IOU_EPSILON)
