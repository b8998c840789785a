"""From a batch of tensors to per-sample numpy label images, for the instance metrics.

The instance metrics (adapted Rand, average precision, instance F1) label connected components
with scikit-image, so they work on the CPU like the reference. These helpers do the shared
steps: move to numpy, pick the target's label channel, check shapes, and threshold + label.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from skimage import measure

from unet_core.errors import DataError


def to_numpy(x: Any, name: str, metric: str) -> np.ndarray:
    """A detached host copy of a tensor (bf16/fp16 widened to float32) or an array as is."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return np.asarray(x.cpu().numpy())
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{metric}: the {name} must be a tensor or an array, got {type(x)}."
        ) from exc


def prediction_array(prediction: Any, metric: str) -> np.ndarray:
    """The prediction as ``(N, C, *spatial)``; a tuple of heads is joined along channels."""
    if isinstance(prediction, (tuple, list)):
        parts = [to_numpy(p, "prediction", metric) for p in prediction]
        try:
            arr = np.concatenate(parts, axis=1)
        except ValueError as exc:
            shapes = [p.shape for p in parts]
            raise DataError(
                f"{metric}: the prediction heads {shapes} cannot be joined along the channel "
                "axis; they must agree in batch and spatial shape."
            ) from exc
    else:
        arr = to_numpy(prediction, "prediction", metric)
    if arr.ndim < 3:
        raise DataError(f"{metric} needs a prediction (N, C, *spatial), got shape {arr.shape}.")
    return arr


def target_labels(
    target: Any, prediction_shape: Sequence[int], use_last_target: bool, metric: str
) -> np.ndarray:
    """The ground-truth label images ``(N, *spatial)`` as int64.

    A target with a channel axis ``(N, C, *spatial)`` gives its last channel
    (``use_last_target``) or its first; one without a channel axis ``(N, *spatial)`` is used as
    it is. (The reference always took a channel, so a 4D target lost its z axis there.)
    """
    arr = to_numpy(target, "target", metric)
    n, spatial = prediction_shape[0], tuple(prediction_shape[2:])
    seen = arr.shape
    if arr.ndim == len(prediction_shape):
        arr = arr[:, -1] if use_last_target else arr[:, 0]
    if arr.shape != (n, *spatial):
        raise DataError(
            f"{metric} needs a target of instance labels (N, C, *spatial) or (N, *spatial) "
            f"matching the prediction {tuple(prediction_shape)}, got {seen}. "
            "Keep the label image in the target (e.g. append_label: true in the label "
            "transform) and check the patch shapes."
        )
    if arr.dtype.kind == "f":
        return arr.astype(np.int64)  # truncates like the reference's cast
    if arr.dtype.kind not in "iub":
        raise DataError(f"{metric}: the target must hold integer labels, got dtype {arr.dtype}.")
    return arr.astype(np.int64, copy=False)


def check_channel(index: int, n_channels: int, key: str, metric: str) -> int:
    """``index`` as a valid channel of an ``n_channels`` prediction (negative counts back)."""
    if not -n_channels <= index < n_channels:
        raise DataError(
            f"{metric}: {key}={index} but the prediction has {n_channels} channel(s); set "
            f"{key} to a channel in 0..{n_channels - 1}."
        )
    return index % n_channels


def components(mask: np.ndarray) -> np.ndarray:
    """Connected components of a boolean mask, face connectivity, background 0."""
    return measure.label(mask.astype(np.uint8, copy=False), background=0, connectivity=1)


def label_channels(sample: np.ndarray, metric: str, instead: str) -> Iterator[np.ndarray]:
    """The channels of one sample ``(C, *spatial)`` as label images, refusing probabilities.

    ``instead`` names the metrics that threshold probabilities first, for the error message.
    """
    if sample.dtype.kind == "f" and not np.array_equal(sample, np.round(sample)):
        raise DataError(
            f"{metric} scores prediction channels that already are label images, but got "
            f"non-integer values (probabilities?). Use {instead}, which threshold them first."
        )
    for channel in sample:
        yield channel.astype(np.int64, copy=False)
