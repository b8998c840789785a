"""The base of every built-in loss: the reference's common keys and its two wrappers.

pytorch-3dunet pops ``ignore_index``, ``skip_last_target``, ``weight`` and ``pos_weight`` from
every ``loss`` section and reads ``squeeze_channel``; it then wraps the loss in a masking
wrapper (inside) and a skip-last-channel wrapper (outside). Here :class:`Loss.forward` does the
same steps in the same order, so each loss only implements :meth:`Loss.compute` on a prepared
target, and checks the target's layout on the way (see :mod:`unet_plugins.losses.targets`).

Masking differs on purpose: the reference multiplies the *logits* by the mask, so a masked
voxel still counts as a prediction of logit 0 (BCE adds log 2 for it, sigmoid-Dice 0.25 to the
denominator). Here masked voxels are excluded: means run over the unmasked voxels and Dice sums
skip them. Without ``ignore_index`` every loss equals the reference's value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from unet_core.errors import ConfigError
from unet_plugins.losses import targets
from unet_plugins.losses.config_checks import (  # noqa: F401 - re-exported for the loss modules
    check_loss_config,
    model_activation,
    validate_loss_config,
)
from unet_plugins.losses.configs import (  # noqa: F401 - re-exported for the loss modules
    Layout,
    LossConfig,
    Normalization,
)


class Loss(nn.Module):
    """``loss(logits, target, weight=None) -> scalar`` with the reference's wrappers built in.

    Subclasses set ``Config``, ``target_layout`` and implement :meth:`compute`. Build one with
    ``registry.create("losses", {"name": ..., **params})``, ``Cls(**params)`` or
    ``Cls.from_config(config)``.
    """

    Config: ClassVar[type[LossConfig]] = LossConfig
    #: True only where the dataset must load the per-voxel ``weight`` dataset.
    needs_weight: ClassVar[bool] = False
    #: "masks" (N,C,...) in [0,1] | "indices" (N,...) int | "dense" (N,C,...) real.
    target_layout: ClassVar[Layout] = "masks"
    #: cross-entropy losses handle ignore_index themselves (no voxel mask is built).
    native_ignore: ClassVar[bool] = False
    #: config fields of per-channel factors kept as float32 buffers (they follow ``.to()``).
    tensor_params: ClassVar[tuple[str, ...]] = ()
    #: the validated parameters (an instance of the subclass's ``Config``).
    config: Any

    def __init__(self, config: LossConfig | None = None, **params: Any) -> None:
        super().__init__()
        if config is None:
            config = validate_config(type(self), params)
        elif params:
            raise TypeError("pass either a Config or keyword parameters, not both")
        self.config = config
        self._values_seen: set[tuple[int, torch.dtype]] = set()
        for field in self.tensor_params:
            self.register_buffer(field, float_tensor(getattr(config, field)))

    @classmethod
    def from_config(cls, config: LossConfig, **context: Any) -> Loss:
        """Build from a validated Config (registry hook); context such as ``device`` is unused."""
        return cls(config)

    # -- per-loss hooks -------------------------------------------------------------------
    def compute(
        self,
        logits: torch.Tensor,
        target: torch.Tensor,
        mask: torch.Tensor | None,
        weight: torch.Tensor | None,
    ) -> torch.Tensor:
        """The loss on a checked target; ``mask`` is True where voxels count (None: all)."""
        raise NotImplementedError

    @classmethod
    def expected_activation(cls, config: LossConfig) -> str | None:
        """The model output this loss trains ("sigmoid"/"softmax"/"none"), None if any."""
        return config.expected_activation()

    # -- the shared pipeline --------------------------------------------------------------
    def forward(
        self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
    ) -> torch.Tensor:
        name = type(self).__name__
        cfg = self.config
        raw = target
        target = targets.select_target(name, cfg, logits, target)
        targets.check_layout(name, self.target_layout, cfg, logits, raw, target)
        if self.needs_weight:
            weight = targets.check_weight(name, target, weight)
        ignore = self.ignore_value()
        key = (target.dim(), target.dtype)
        if key not in self._values_seen:
            targets.check_values(name, self.target_layout, cfg, logits, raw, target, ignore)
            self._values_seen.add(key)
        if logits.dtype in (torch.float16, torch.bfloat16):
            logits = logits.float()  # reductions over a whole patch need float32
        mask = None
        if cfg.ignore_index is not None and not self.native_ignore:
            mask = target != cfg.ignore_index
            target = target.masked_fill(~mask, 0)
        if self.target_layout == "indices":
            target = target.long()
        elif target.dtype != logits.dtype:
            target = target.to(logits.dtype)
        if weight is not None and weight.dtype != logits.dtype:
            weight = weight.to(logits.dtype)
        return self.compute(logits, target, mask, weight)

    def ignore_value(self) -> int | None:
        """The target value that does not count (for the value checks)."""
        return self.config.ignore_index

    def class_weight(self, logits: torch.Tensor) -> torch.Tensor | None:
        """The ``weight`` buffer on the logits' device and dtype, one value per channel."""
        weight: torch.Tensor | None = getattr(self, "weight", None)
        if weight is None:
            return None
        if weight.numel() != logits.shape[1]:
            raise ConfigError(
                f"loss.weight has {weight.numel()} values but the logits have "
                f"{logits.shape[1]} channels (model.out_channels); give one weight per channel."
            )
        return weight.to(device=logits.device, dtype=logits.dtype)

    # -- config-time checks ---------------------------------------------------------------
    @classmethod
    def check_config(cls, config: LossConfig | Mapping[str, Any], model_spec: Any) -> list[str]:
        """Problems visible from the config alone (loss vs. ``model`` section), one per line."""
        return check_loss_config(cls.__name__, cls.Config, config, model_spec)


def validate_config(cls: type[Loss], params: Mapping[str, Any]) -> LossConfig:
    """``cls.Config`` from keyword parameters, with ConfigError instead of ValidationError."""
    return validate_loss_config(cls.__name__, cls.Config, params)


# -- helpers shared by the loss modules ------------------------------------------------------
def float_tensor(values: float | Sequence[float] | None) -> torch.Tensor | None:
    """A config list (or number) as a float32 tensor, None stays None."""
    return None if values is None else torch.tensor(values, dtype=torch.float32)


def per_channel(values: torch.Tensor, like: torch.Tensor, what: str) -> torch.Tensor:
    """Reshape a (C,) tensor to broadcast over the channel axis of ``like`` (N,C,...)."""
    values = values.to(device=like.device, dtype=like.dtype)
    if values.dim() == 0:
        return values
    if values.numel() != like.shape[1]:
        raise ConfigError(
            f"loss.{what} has {values.numel()} values but the logits have {like.shape[1]} "
            f"channels (model.out_channels); give one {what} per output channel."
        )
    return values.reshape((1, -1) + (1,) * (like.dim() - 2))


def normalize(logits: torch.Tensor, how: str) -> torch.Tensor:
    """Probabilities from logits: sigmoid, softmax over channels, or identity."""
    if how == "sigmoid":
        return torch.sigmoid(logits)
    if how == "softmax":
        return torch.softmax(logits, dim=1)
    return logits


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the voxels where ``mask`` is True (all if None); 0 if nothing counts."""
    if mask is None:
        return values.mean()
    kept = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device))
    return kept.sum() / mask.sum().clamp(min=1).to(values.dtype)


def channel_sum(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-channel sums of an (N,C,...) tensor over batch and space, skipping masked voxels."""
    if mask is not None:
        values = values * mask
    dims = [0, *range(2, values.dim())]
    return values.sum(dim=dims)
