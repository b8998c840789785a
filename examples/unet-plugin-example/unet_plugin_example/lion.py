"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") in plain torch.

Lion keeps one momentum buffer and moves every weight by exactly ``learning_rate`` in the
direction of the sign of an interpolated momentum, so it needs a smaller learning rate than Adam
(typically 3-10x smaller) and a correspondingly larger ``weight_decay``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

import torch
from pydantic import Field

from unet_core.interfaces import ComponentConfig

Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class Lion(torch.optim.Optimizer):
    """The Lion optimizer; a config selects it with ``optimizer: {name: Lion, ...}``."""

    class Config(ComponentConfig):
        """Parameters of Lion, keyed like unet-core's built-in optimizers."""

        learning_rate: float = Field(1e-4, gt=0, description="Step size of every update.")
        betas: tuple[Beta, Beta] = Field(
            (0.9, 0.99),
            description="(beta1, beta2): interpolation for the update and momentum decay.",
        )
        weight_decay: float = Field(0.0, ge=0, description="Decoupled weight decay.")

    @classmethod
    def from_config(cls, config: Config, params: Iterable[Any]) -> Lion:
        """How ``registry.create("optimizers", spec, params=...)`` builds it."""
        return cls(
            params, lr=config.learning_rate, betas=config.betas, weight_decay=config.weight_decay
        )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), decay = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                momentum = self.state[p].setdefault("exp_avg", torch.zeros_like(p))
                if decay:
                    p.mul_(1.0 - lr * decay)
                update = momentum.mul(beta1).add_(p.grad, alpha=1.0 - beta1).sign_()
                p.add_(update, alpha=-lr)
                momentum.mul_(beta2).add_(p.grad, alpha=1.0 - beta2)
        return loss
