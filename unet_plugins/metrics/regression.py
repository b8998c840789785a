"""Regression scores in torch on the prediction's device: PSNR and MSE over the whole batch.

They reproduce ``skimage.metrics.peak_signal_noise_ratio(target, prediction)`` and
``mean_squared_error`` (the reference's calls) without copying the batch to the host. Squared
errors are accumulated in float64 (float32 on MPS, which has no float64).
"""

from __future__ import annotations

from typing import Any

import torch

from unet_core.errors import DataError
from unet_plugins.metrics.base import Metric, as_tensor
from unet_plugins.metrics.configs import MSEConfig, PSNRConfig


def _accumulator(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _pair(prediction: Any, target: Any, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    p = as_tensor(prediction, "prediction")
    t = as_tensor(target, "target", p.device)
    if p.shape != t.shape:
        raise DataError(
            f"{metric} compares the prediction with a target of the same shape, got "
            f"{tuple(p.shape)} and {tuple(t.shape)}. Check model.out_channels and the label "
            "transforms (ToTensor expand_dims)."
        )
    return p, t


def _squared_error(
    p: torch.Tensor, t: torch.Tensor, ignore_index: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean squared error (0-d, accumulator dtype) and the kept-voxel mask (or None)."""
    acc = _accumulator(p.device)
    diff = (p.to(acc) - t.to(acc)).square()
    if ignore_index is None:
        return diff.mean(), None
    keep = t != ignore_index
    return (diff * keep).sum() / keep.sum().clamp(min=1), keep


def _dtype_range(dtype: torch.dtype) -> tuple[float, float]:
    """scikit-image's ``dtype_range`` for a torch dtype: floats are [-1, 1]."""
    if dtype == torch.bool:
        return 0.0, 1.0
    if dtype.is_floating_point:
        return -1.0, 1.0
    info = torch.iinfo(dtype)
    return float(info.min), float(info.max)


class MSE(Metric):
    """Mean squared error between prediction and target over all voxels of the batch."""

    higher_is_better = False

    Config = MSEConfig

    def __call__(self, prediction: Any, target: Any) -> torch.Tensor:
        with torch.no_grad():
            p, t = _pair(prediction, target, "MSE")
            return _squared_error(p, t, self.config.ignore_index)[0]


class PSNR(Metric):
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` of the batch, in dB.

    ``data_range: null`` infers it from the target as scikit-image does: the maximum of the
    target's dtype range if the target is >= 0, the whole range otherwise (float: 1 or 2);
    a float target outside [-1, 1] then has no inferable range and is an error. Identical
    prediction and target give ``inf``.
    """

    higher_is_better = True

    Config = PSNRConfig

    def __call__(self, prediction: Any, target: Any) -> torch.Tensor:
        with torch.no_grad():
            p, t = _pair(prediction, target, "PSNR")
            mse, keep = _squared_error(p, t, self.config.ignore_index)
            if self.config.data_range is not None:
                data_range = self.config.data_range
            else:
                data_range = self._inferred_range(t if keep is None else t[keep])
            return 10 * torch.log10(data_range**2 / mse)

    @staticmethod
    def _inferred_range(t: torch.Tensor) -> float:
        low, high = _dtype_range(t.dtype)
        if t.numel() == 0:
            return high
        t_min, t_max = torch.aminmax(t.to(torch.uint8) if t.dtype == torch.bool else t)
        t_min_v, t_max_v = (float(v) for v in torch.stack([t_min, t_max]).tolist())
        if t_max_v > high or t_min_v < low:
            raise DataError(
                f"PSNR cannot infer the data range: the target's values span "
                f"[{t_min_v:g}, {t_max_v:g}], outside [{low:g}, {high:g}] expected for its "
                f"dtype {t.dtype}. Set eval_metric.data_range (e.g. {t_max_v - t_min_v:g}, "
                "the target's max - min) or normalise the target to [-1, 1]."
            )
        return high if t_min_v >= 0 else high - low
