"""Surface Dice at a tolerance (Nikolov et al. 2021, "Clinically applicable segmentation of head
and neck anatomy for radiotherapy"), also called normalised surface distance.

Volume Dice rewards big objects and forgives ragged outlines; surface Dice asks what fraction of
the two outlines lies within ``tolerance`` of each other, which is what matters when the
segmentation feeds shape measurements or a proof-reader. With S_p and S_t the surface voxels of
prediction and target::

    SD = (|S_p within tolerance of S_t| + |S_t within tolerance of S_p|) / (|S_p| + |S_t|)

A surface voxel is a foreground voxel with a background neighbour along an axis (6-connected
in 3D); the edge of the patch is not a surface, so a patch that cuts an object does not
invent an outline there. Distances are Euclidean, in units of ``spacing``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from scipy import ndimage

from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig


def surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a background face-neighbour inside the array."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=1)


def surface_dice(
    pred: np.ndarray, true: np.ndarray, tolerance: float, spacing: tuple[float, ...]
) -> float:
    """Surface Dice of two boolean masks of one shape.

    Both without a surface: 1 if both are empty or both fill the array, else 0.
    """
    sp, st = surface(pred), surface(true)
    n_p, n_t = int(sp.sum()), int(st.sum())
    if n_p == 0 or n_t == 0:
        same = n_p == n_t and pred.any() == true.any()
        return 1.0 if same else 0.0
    to_true = ndimage.distance_transform_edt(~st, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    matched = int((to_true[sp] <= tolerance).sum()) + int((to_pred[st] <= tolerance).sum())
    return matched / (n_p + n_t)


class SurfaceDice:
    """Mean surface Dice over samples and channels of thresholded probabilities vs. masks.

    Called as ``metric(probabilities, target)`` with probabilities (N, C, *spatial) and a
    target of the same shape (per-channel masks), or (N, *spatial) when C is 1.
    """

    higher_is_better: ClassVar[bool] = True

    class Config(ComponentConfig):
        """Parameters of SurfaceDice."""

        tolerance: float = Field(
            1.0,
            ge=0,
            description="Largest distance (in units of spacing) at which a surface voxel of "
            "one mask still counts as matched by the other's surface.",
        )
        spacing: list[float] | None = Field(
            None,
            min_length=2,
            max_length=3,
            description="Voxel size per spatial axis, (z, y, x) or (y, x); null: 1 per axis. "
            "Set it for anisotropic stacks, e.g. [2.0, 0.5, 0.5] (then tolerance is in the "
            "same unit).",
        )
        threshold: float = Field(
            0.5, gt=0, lt=1, description="Probability above which a voxel is foreground."
        )
        channels: list[int] | None = Field(
            None, description="Output channels to score (null: all); e.g. [1] to skip "
            "a softmax background channel.",
        )  # fmt: skip

    def __init__(self, **params: Any) -> None:
        self.config = self.Config.model_validate(params)

    @classmethod
    def from_config(cls, config: Config, **context: Any) -> SurfaceDice:
        """How ``registry.create("metrics", spec)`` builds it."""
        return cls(**config.model_dump())

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> float:
        cfg = self.config
        pred, true = self._masks(prediction, target)
        spatial = pred.ndim - 2
        spacing = tuple(cfg.spacing) if cfg.spacing is not None else (1.0,) * spatial
        if len(spacing) != spatial:
            raise DataError(
                f"SurfaceDice has spacing {list(spacing)} ({len(spacing)} axes) but the "
                f"prediction has {spatial} spatial axes (shape {tuple(pred.shape)}); give one "
                "spacing per spatial axis."
            )
        channels = cfg.channels if cfg.channels is not None else range(pred.shape[1])
        scores = [
            surface_dice(pred[n, c], true[n, c], cfg.tolerance, spacing)
            for n in range(pred.shape[0])
            for c in channels
        ]
        return float(np.mean(scores))

    def _masks(self, prediction: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
        p = torch.as_tensor(prediction).detach()
        t = torch.as_tensor(target).detach()
        if p.dim() < 3:
            raise DataError(
                f"SurfaceDice needs a prediction (N, C, *spatial), got shape {tuple(p.shape)}."
            )
        if t.dim() == p.dim() - 1 and p.shape[1] == 1:
            t = t.unsqueeze(1)
        if t.shape != p.shape:
            raise DataError(
                f"SurfaceDice needs a target of the prediction's shape {tuple(p.shape)} (one "
                f"mask per channel), got {tuple(t.shape)}. Turn labels into masks in the "
                "`label` transformer (e.g. BlobsToMask) and keep ToTensor's expand_dims "
                "consistent with the model's output channels."
            )
        bad = [c for c in self.config.channels or [] if not -p.shape[1] <= c < p.shape[1]]
        if bad:
            raise DataError(
                f"SurfaceDice.channels {bad} do not exist: the prediction has {p.shape[1]} "
                "channels; fix eval_metric.channels."
            )
        pred = p.float().cpu().numpy() > self.config.threshold
        true_f = t.cpu().numpy()
        true = true_f > 0.5 if np.issubdtype(true_f.dtype, np.floating) else true_f != 0
        return pred, true
