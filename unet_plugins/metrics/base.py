"""What every built-in metric shares: a validated ``Config`` and a declared direction.

A metric is called as ``metric(probabilities, target)`` with the model's activated output
``(N, C, *spatial)`` and the target batch as the loaders produce it; it returns a float or a
0-d tensor. ``higher_is_better`` tells the trainer which way is better, so
``trainer.eval_score_higher_is_better`` only needs setting to override it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import ValidationError

from unet_core import interfaces
from unet_core.errors import ConfigError, DataError
from unet_core.interfaces import ComponentConfig
from unet_core.registry import format_validation_error
from unet_plugins.metrics.configs import NO_EFFECT  # noqa: F401 - re-exported


class Metric(interfaces.Metric):
    """Base class (the metric contract): ``Metric(**params)`` validates ``params`` with the
    subclass's ``Config``."""

    Config: ClassVar[type[ComponentConfig]] = ComponentConfig
    higher_is_better: ClassVar[bool] = True

    def __init__(self, config: ComponentConfig | None = None, /, **params: Any) -> None:
        if config is None:
            try:
                config = self.Config.model_validate(params)
            except ValidationError as exc:
                raise ConfigError(
                    format_validation_error(f"metric {type(self).__name__!r}", exc)
                ) from None
        elif params:
            raise TypeError("pass either a Config or keyword parameters, not both")
        self.config: Any = config

    @classmethod
    def from_config(cls, config: ComponentConfig) -> Metric:
        """Build from an already validated ``Config`` (what the registry calls), as it is."""
        return cls(config)

    def __call__(self, prediction: Any, target: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"


def as_tensor(x: Any, name: str, device: torch.device | None = None) -> torch.Tensor:
    """``x`` as a tensor (on ``device`` if given), for metrics that compute in torch."""
    if isinstance(x, torch.Tensor):
        return x if device is None else x.to(device)
    try:
        return torch.as_tensor(x, device=device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise DataError(f"The metric's {name} must be a tensor or array, got {type(x)}.") from exc
