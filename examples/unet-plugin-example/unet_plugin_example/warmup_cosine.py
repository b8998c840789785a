"""A linear warm-up followed by cosine decay, as one LR scheduler.

The trainer steps schedulers once per validation run, so ``warmup_steps`` and ``total_steps``
count validations, not iterations.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, model_validator

from unet_core.interfaces import ComponentConfig


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """lr = base_lr * (t + 1) / warmup_steps while warming up, then a cosine down to
    ``min_lr_ratio * base_lr`` at ``total_steps``, and constant after that."""

    #: The trainer passes no score to ``step()``.
    needs_metric = False

    class Config(ComponentConfig):
        """Parameters of WarmupCosine."""

        total_steps: int = Field(..., ge=1, description="Scheduler steps until the end of decay.")
        warmup_steps: int = Field(0, ge=0, description="Steps of linear warm-up.")
        min_lr_ratio: float = Field(
            0.0, ge=0, le=1, description="Final learning rate as a fraction of the initial one."
        )

        @model_validator(mode="after")
        def _warmup_fits(self) -> Any:
            if self.warmup_steps >= self.total_steps:
                raise ValueError(
                    f"warmup_steps ({self.warmup_steps}) must be smaller than total_steps "
                    f"({self.total_steps})"
                )
            return self

    @classmethod
    def from_config(cls, config: Config, optimizer: torch.optim.Optimizer) -> WarmupCosine:
        """How ``registry.create("lr_schedulers", spec, optimizer=...)`` builds it."""
        return cls(optimizer, **config.model_dump())

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
    ) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        """The multiplier of the initial learning rate after ``step`` scheduler steps."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine

    def get_lr(self) -> list[float]:  # type: ignore[override]
        return [float(base) * self.factor(self.last_epoch) for base in self.base_lrs]
