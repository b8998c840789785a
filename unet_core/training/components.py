"""What the training loop works with: built by :mod:`unet_core.training.run`, read by the
loop (:mod:`unet_core.training.trainer`) and by validation
(:mod:`unet_core.training.validation`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.training import distributed as dist

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import ExperimentConfig


@dataclass
class Components:
    """Everything the loop works with, built by :mod:`unet_core.training.run`."""

    config: ExperimentConfig
    model: torch.nn.Module  # the bare network, on the device
    loss: Callable[..., torch.Tensor]
    metric: Callable[..., Any]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    loaders: dict[str, Any]
    device: torch.device
    checkpoint_dir: Path
    higher_is_better: bool
    ctx: dist.DistContext = field(default_factory=dist.DistContext)
    train_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    eval_logits: Callable[[torch.Tensor], torch.Tensor] | None = None
    memory_format: Any = None
    scheduler_needs_metric: bool | None = None  # None: True for ReduceLROnPlateau
