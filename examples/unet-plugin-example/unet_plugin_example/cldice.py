"""The soft clDice loss (Shit et al. 2021, "clDice - a Novel Topology-Preserving Loss Function
for Tubular Structure Segmentation") for vessels, neurites, filaments and membranes.

Voxel overlap (Dice) barely notices a one-voxel gap that cuts a vessel in two; clDice compares
*skeletons* instead. A differentiable "soft skeleton" is peeled off a probability map by
repeated min-pooling (erosion) and max-pooling (dilation). Topology precision is the fraction
of the predicted skeleton inside the true mask, topology sensitivity the fraction of the true
skeleton inside the prediction, and clDice is their harmonic mean. The loss mixes it with soft
Dice: ``alpha * (1 - clDice) + (1 - alpha) * (1 - Dice)``, per channel, averaged over channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unet_core.errors import DataError
from unet_core.interfaces import ComponentConfig

_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def soft_erode(x: torch.Tensor) -> torch.Tensor:
    """Min over the 3-voxel line along each spatial axis (the cross-shaped erosion)."""
    dims = x.dim() - 2
    out = None
    for axis in range(dims):
        kernel = tuple(3 if a == axis else 1 for a in range(dims))
        pad = tuple(1 if a == axis else 0 for a in range(dims))
        eroded = -_POOL[dims](-x, kernel, 1, pad)
        out = eroded if out is None else torch.minimum(out, eroded)
    assert out is not None
    return out


def soft_dilate(x: torch.Tensor) -> torch.Tensor:
    """Max over the 3x3(x3) neighbourhood."""
    return _POOL[x.dim() - 2](x, 3, 1, 1)


def soft_skeleton(x: torch.Tensor, iterations: int) -> torch.Tensor:
    """A differentiable skeleton of the probability map ``x`` (N, C, *spatial) in [0, 1]."""
    skeleton = F.relu(x - soft_dilate(soft_erode(x)))
    for _ in range(iterations):
        x = soft_erode(x)
        delta = F.relu(x - soft_dilate(soft_erode(x)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


class SoftClDiceLoss(nn.Module):
    """Soft clDice + soft Dice on sigmoid (or softmax) probabilities against per-channel masks.

    ``loss(logits, target)`` with a target of the logits' shape (N, C, Z, Y, X) (or (N, C, Y, X))
    holding masks in [0, 1]. ``iterations`` must be at least half the thickness, in voxels,
    of the thickest structure, or its skeleton is not reached.
    """

    #: no per-voxel weight map is loaded for this loss.
    needs_weight: ClassVar[bool] = False
    #: one mask per output channel, the logits' shape.
    target_layout: ClassVar[str] = "masks"

    class Config(ComponentConfig):
        """Parameters of SoftClDiceLoss."""

        alpha: float = Field(
            0.5,
            ge=0,
            le=1,
            description="Weight of the clDice term; (1 - alpha) weights the soft Dice term.",
        )
        iterations: int = Field(
            5,
            ge=0,
            description="Erosion steps of the soft skeleton: at least half the thickness "
            "(voxels) of the thickest structure.",
        )
        smooth: float = Field(
            1.0, gt=0, description="Added to numerators and denominators (empty masks score 1)."
        )
        normalization: Literal["sigmoid", "softmax"] = Field(
            "sigmoid",
            description="Logits -> probabilities: sigmoid per channel, or softmax over channels. "
            "Must match the model's final activation (final_sigmoid).",
        )
        include_background: bool = Field(
            True,
            description="Score channel 0 too; false leaves it out (for a softmax background "
            "channel, whose skeleton means nothing).",
        )

    def __init__(self, **params: Any) -> None:
        super().__init__()
        self.config = self.Config.model_validate(params)
        self._checked_values = False

    @classmethod
    def from_config(cls, config: Config, **context: Any) -> SoftClDiceLoss:
        """How ``registry.create("losses", spec)`` builds it."""
        return cls(**config.model_dump())

    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        cfg = self.config
        self._check_target(logits, target)
        logits = logits.float()
        probs = torch.sigmoid(logits) if cfg.normalization == "sigmoid" else logits.softmax(1)
        target = target.to(probs.dtype)
        if not cfg.include_background:
            probs, target = probs[:, 1:], target[:, 1:]
        sums = [0, *range(2, probs.dim())]  # batch and space: one value per channel
        s = cfg.smooth
        dice = (2 * (probs * target).sum(sums) + s) / (probs.sum(sums) + target.sum(sums) + s)
        if cfg.alpha == 0:
            return (1 - dice).mean()
        skel_p = soft_skeleton(probs, cfg.iterations)
        skel_t = soft_skeleton(target, cfg.iterations)
        precision = ((skel_p * target).sum(sums) + s) / (skel_p.sum(sums) + s)
        sensitivity = ((skel_t * probs).sum(sums) + s) / (skel_t.sum(sums) + s)
        cldice = 2 * precision * sensitivity / (precision + sensitivity)
        return (cfg.alpha * (1 - cldice) + (1 - cfg.alpha) * (1 - dice)).mean()

    def _check_target(self, logits: torch.Tensor, target: Any) -> None:
        """Shape and dtype on every call; values once (that costs a device sync)."""
        if not isinstance(target, torch.Tensor) or target.shape != logits.shape:
            got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target)
            hint = (
                " The target has no channel axis, so it looks like a label image: turn it into "
                "masks in the `label` transformer (e.g. BlobsToMask) and end it with ToTensor "
                "with expand_dims: true."
                if isinstance(target, torch.Tensor) and target.dim() == logits.dim() - 1
                else " Make the label transforms produce one mask per model output channel."
            )
            raise DataError(
                f"SoftClDiceLoss needs a target of the logits' shape {tuple(logits.shape)} "
                f"(one mask per output channel, values in [0, 1]), got {got}.{hint}"
            )
        if target.is_complex():
            raise DataError("SoftClDiceLoss needs a real-valued target, got a complex tensor.")
        if not self._checked_values and target.numel():
            low, high = float(target.min()), float(target.max())
            if low < 0 or high > 1:
                raise DataError(
                    f"SoftClDiceLoss needs masks in [0, 1], but the target ranges from {low:g} "
                    f"to {high:g} (instance ids or class indices?). Turn the labels into masks "
                    "in the `label` transformer, e.g. BlobsToMask for foreground."
                )
            self._checked_values = True
        if not self.config.include_background and logits.shape[1] < 2:
            raise DataError(
                "SoftClDiceLoss has include_background: false but the model has one output "
                "channel, so nothing is left to score; set include_background: true."
            )

    # -- optional: `unet config validate` calls this with the model section --------------------
    @classmethod
    def check_config(
        cls, config: Config | Mapping[str, Any], model_spec: Mapping[str, Any]
    ) -> list[str]:
        """Problems visible from the config alone (loss vs. model section), one per item."""
        if isinstance(config, cls.Config):
            cfg = config
        else:
            cfg = cls.Config.model_validate({k: v for k, v in config.items() if k != "name"})
        problems = []
        sigmoid = bool(model_spec.get("final_sigmoid", True))
        if not model_spec.get("is_segmentation", True):
            problems.append(
                "loss SoftClDiceLoss trains probabilities, but model.is_segmentation is false "
                "(raw output at prediction time); set model.is_segmentation: true."
            )
        elif sigmoid != (cfg.normalization == "sigmoid"):
            problems.append(
                f"loss SoftClDiceLoss uses normalization: {cfg.normalization} but the model "
                f"applies {'a sigmoid' if sigmoid else 'a softmax'} at prediction time "
                f"(final_sigmoid: {sigmoid}); set model.final_sigmoid: {not sigmoid} or "
                f"loss.normalization: {'sigmoid' if sigmoid else 'softmax'}."
            )
        if not cfg.include_background and model_spec.get("out_channels") == 1:
            problems.append(
                "loss SoftClDiceLoss has include_background: false but model.out_channels is 1, "
                "so no channel is left; set include_background: true."
            )
        return problems
