"""The default inference backend: the model runs in torch itself (today's path).

Its precision, memory layout and compilation are the predictor's keys (``amp``,
``channels_last``, ``compile``), so a config without ``predictor.backend`` predicts exactly
as before backends existed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unet_core.interfaces import ComponentConfig, InferenceBackend


class TorchConfig(ComponentConfig):
    """No keys of its own: predictor.amp, channels_last and compile apply."""


class TorchBackend(InferenceBackend):
    """Run the network in torch on any device (the predictor's own forward path)."""

    Config = TorchConfig

    def __init__(self, config: TorchConfig | None = None) -> None:
        self.config = config or TorchConfig()

    @classmethod
    def from_config(cls, config: TorchConfig, **_: Any) -> TorchBackend:
        return cls(config)

    def prepare(self, model: Any, device: Any, model_key: Callable[[], str]) -> None:
        """None: the predictor runs the model itself."""
        return None
