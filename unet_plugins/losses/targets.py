"""Target checks shared by the losses: a wrong label layout fails with the fix, not a traceback.

Three layouts exist (a loss declares one in ``target_layout``):

- ``masks``: one mask per output channel, the logits' shape (N, C, Z, Y, X), values in [0, 1]
  (BCE, Dice, GDL, focal, Tversky);
- ``indices``: class indices, the logits' shape without the channel axis (N, Z, Y, X), integer
  (the cross-entropy losses);
- ``dense``: any real values of the logits' shape (regression).

Shape and dtype checks run on every call (they cost no device synchronisation, and the
validation pipeline may differ from the training one); value checks synchronise once, on the
first target of each rank and dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from unet_core.errors import DataError

if TYPE_CHECKING:
    from unet_plugins.losses.configs import LossConfig

LABEL_TO_MASKS = (
    "Turn the labels into per-channel masks in the `label` transformer, e.g. BlobsToMask "
    "(foreground) or StandardLabelToBoundary (boundaries) followed by ToTensor with "
    "expand_dims: true, or one-hot encode class labels"
)
INDEX_TENSOR = "ToTensor with expand_dims: false and dtype: int64 in the `label` transformer"


def describe(t: torch.Tensor) -> str:
    """``shape (2, 1, 8, 8) float32`` for messages."""
    return f"shape {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"


def _prefix(name: str, logits: torch.Tensor, raw: torch.Tensor, target: torch.Tensor) -> str:
    text = f"{name} got logits of {describe(logits)} and a target of {describe(raw)}"
    if target is not raw:
        steps = []
        if target.dim() == raw.dim():
            steps.append("skip_last_target")
        elif raw.shape[1] == 1:
            steps.append("squeeze_channel")
        else:
            steps += ["skip_last_target", "squeeze_channel"]
        text += f" ({describe(target)} after {' and '.join(steps)})"
    return text


def select_target(name: str, cfg: LossConfig, logits: torch.Tensor, target: Any) -> torch.Tensor:
    """Apply ``skip_last_target`` and ``squeeze_channel`` (reference order: skip, then squeeze)."""
    if not isinstance(target, torch.Tensor):
        raise DataError(
            f"{name} expects the target as a torch tensor, got {type(target).__name__}. "
            "End the `label` transformer with ToTensor."
        )
    if cfg.skip_last_target:
        if target.dim() != logits.dim() or target.shape[1] < 2:
            raise DataError(
                f"{name} has skip_last_target: true, which drops the last target channel, but "
                f"got a target of {describe(target)} for logits of {describe(logits)}: the "
                "target needs a channel axis with at least 2 channels (N, C, Z, Y, X). Set "
                "skip_last_target: false, or make the label transform append the extra channel "
                "(e.g. append_label: true) and keep ToTensor's expand_dims consistent."
            )
        target = target[:, :-1]
    if cfg.squeeze_channel and target.dim() == logits.dim() and target.shape[1] == 1:
        target = target.squeeze(1)
    return target


def check_layout(
    name: str,
    layout: str,
    cfg: LossConfig,
    logits: torch.Tensor,
    raw: torch.Tensor,
    target: torch.Tensor,
) -> None:
    """Raise DataError unless ``target`` has the shape and dtype ``layout`` needs."""
    if logits.dim() < 2:
        raise DataError(
            f"{name} expects logits of shape (N, C, ...) from the model, got {describe(logits)}."
        )
    pre = _prefix(name, logits, raw, target)
    if layout == "indices":
        _check_indices(pre, cfg, logits, target)
    else:
        _check_channels(pre, layout, cfg, logits, target)


def _check_indices(pre: str, cfg: LossConfig, logits: torch.Tensor, target: torch.Tensor) -> None:
    if target.dim() == logits.dim():
        c = target.shape[1]
        extra = ""
        if c == 1:
            extra = ", or set loss.squeeze_channel: true to drop the singleton channel"
        elif c >= 2:
            extra = (
                ", or, if the last channel is an appended label channel (append_label: true), "
                "set loss.skip_last_target: true and loss.squeeze_channel: true"
            )
        raise DataError(
            f"{pre}: it expects class indices, an int64 target of shape (N, Z, Y, X) (the "
            f"logits' shape without the channel axis), but the target has a channel axis of "
            f"size {c}. Use {INDEX_TENSOR}{extra}."
        )
    if target.dim() != logits.dim() - 1:
        raise DataError(
            f"{pre}: it expects class indices of shape {(logits.shape[0], *logits.shape[2:])} "
            f"(the logits' shape without the channel axis). Use {INDEX_TENSOR}."
        )
    if target.is_floating_point() or target.is_complex():
        raise DataError(
            f"{pre}: class indices must be integers, but the target is "
            f"{str(target.dtype).removeprefix('torch.')}. Use {INDEX_TENSOR}; a target of "
            "per-channel masks needs a mask loss such as BCEWithLogitsLoss or DiceLoss instead."
        )
    if target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise DataError(f"{pre}: {_spatial_fix((logits.shape[0], *logits.shape[2:]))}")


def _check_channels(
    pre: str, layout: str, cfg: LossConfig, logits: torch.Tensor, target: torch.Tensor
) -> None:
    if target.dim() == logits.dim() - 1:
        if layout == "masks":
            squeeze = (
                " (squeeze_channel: true removed the channel axis; set it to false for this loss)"
                if cfg.squeeze_channel
                else ""
            )
            raise DataError(
                f"{pre}: it expects one mask per output channel, a target of the logits' shape "
                f"(N, C, Z, Y, X) with values in [0, 1], but the target has no channel axis"
                f"{squeeze}, so it looks like a label image of class indices or instance ids. "
                f"{LABEL_TO_MASKS}; for class indices use CrossEntropyLoss instead."
            )
        raise DataError(
            f"{pre}: it expects a target of the logits' shape (N, C, Z, Y, X), but the target "
            "has no channel axis. Use ToTensor with expand_dims: true in the `label` transformer."
        )
    if target.dim() != logits.dim():
        raise DataError(
            f"{pre}: the target must have the logits' shape {tuple(logits.shape)} "
            "(N, C, Z, Y, X). Check ToTensor's expand_dims in the `label` transformer."
        )
    if target.is_complex():
        raise DataError(f"{pre}: complex targets are not supported; use a real dtype.")
    tc, lc = target.shape[1], logits.shape[1]
    if tc != lc:
        raise DataError(f"{pre}: {_channel_fix(layout, cfg, tc, lc)}")
    if target.shape != logits.shape:
        raise DataError(f"{pre}: {_spatial_fix(tuple(logits.shape))}")


def _channel_fix(layout: str, cfg: LossConfig, tc: int, lc: int) -> str:
    text = (
        f"the target has {tc} channel(s) but the model outputs {lc} (model.out_channels). "
        f"Set model.out_channels to {tc}"
    )
    if cfg.skip_last_target:
        text += (
            f"; skip_last_target: true already dropped the last of the {tc + 1} target "
            "channels, so set it to false if the label transform appends no extra channel"
        )
    elif tc == lc + 1:
        text += (
            ", or, if the last target channel is an extra label channel (append_label: true "
            "in the label transform), set loss.skip_last_target: true"
        )
    text += "."
    if layout == "masks" and tc == 1 and lc > 1:
        text += (
            " If the single target channel holds class indices, one-hot encode them or use "
            "CrossEntropyLoss."
        )
    return text


def _spatial_fix(expected: tuple[int, ...]) -> str:
    return (
        f"the target must have shape {tuple(expected)} to match the logits. Check that raw and "
        "label patches have the same shape (slice builder patch_shape, transforms that keep "
        "the shape on both) and that the model keeps the spatial size (conv_padding: 1)."
    )


def check_values(
    name: str,
    layout: str,
    cfg: LossConfig,
    logits: torch.Tensor,
    raw: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int | None,
) -> None:
    """Raise DataError for values a layout cannot hold (one device sync)."""
    if layout == "dense" or target.numel() == 0:
        return
    valid = target if ignore_index is None else target[target != ignore_index]
    if valid.numel() == 0:
        return
    pre = _prefix(name, logits, raw, target)
    if layout == "masks":
        v = valid.double()
        lo, hi = float(v.min()), float(v.max())
        if not (0.0 <= lo and hi <= 1.0):
            raise DataError(
                f"{pre}: mask targets must lie in [0, 1], but the target holds values from "
                f"{lo:g} to {hi:g}, so it looks like a label image (instance ids or class "
                f"indices). {LABEL_TO_MASKS}{_ignore_hint(cfg, v[(v < 0) | (v > 1)])}."
            )
        return
    c = logits.shape[1]
    lo_i, hi_i = int(valid.min()), int(valid.max())
    if lo_i < 0 or hi_i >= c:
        raise DataError(
            f"{pre}: class indices must lie in [0, {c - 1}] for {c} output channels "
            f"(model.out_channels), but the target holds values from {lo_i} to {hi_i}. Set "
            "model.out_channels to the number of classes (largest label + 1) or relabel the "
            f"target consecutively{_ignore_hint(cfg, valid[(valid < 0) | (valid >= c)])}."
        )


def _ignore_hint(cfg: LossConfig, bad: torch.Tensor) -> str:
    """Suggest ignore_index when a single out-of-range value looks like an 'unlabelled' mark."""
    if cfg.ignore_index is not None:
        return f" (ignore_index is {cfg.ignore_index})"
    values = bad.unique()
    if values.numel() != 1 or not float(values[0]).is_integer():
        return ""
    v = int(values[0])
    return f"; if {v} marks unlabelled voxels, set loss.ignore_index: {v}"


def check_weight(name: str, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The per-voxel weight map, shaped like the class-index target."""
    if weight is None:
        raise DataError(
            f"{name} multiplies the loss of each voxel by a weight map, but no weight was "
            "passed with the batch. Set loaders.weight_internal_path to the HDF5 dataset that "
            "holds the per-voxel weights (and give the `weight` transformer the same spatial "
            "transforms as the label, ending in ToTensor with expand_dims: false), or use "
            "CrossEntropyLoss if you need no per-voxel weights."
        )
    if not isinstance(weight, torch.Tensor):
        raise DataError(f"{name} expects the weight map as a tensor, got {type(weight).__name__}.")
    if weight.dim() == target.dim() + 1 and weight.shape[1] == 1:
        weight = weight.squeeze(1)
    if weight.shape != target.shape:
        raise DataError(
            f"{name} got a weight map of {describe(weight)} for a target of {describe(target)}: "
            "the weight map must have the target's shape (N, Z, Y, X). Give the `weight` "
            "transformer the label's spatial transforms and ToTensor with expand_dims: false, "
            "and store the weights with the label's shape."
        )
    if weight.is_complex() or weight.dtype == torch.bool:
        raise DataError(f"{name} needs a real-valued weight map, got {describe(weight)}.")
    return weight
