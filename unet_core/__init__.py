"""unet-core: validated, pluggable U-Nets for volumetric microscopy.

The public API is small: the registry verbs, ``load_config``, ``train``, ``predict`` and
``predict_array`` (sliding-window inference on any array-like).
Heavy modules (torch, the engines) are imported only when these are called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unet_core.errors import ConfigError, DataError, PluginError, UserError

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "PluginError",
    "UserError",
    "__version__",
    "load_config",
    "predict",
    "predict_array",
    "registry",
    "train",
]

if TYPE_CHECKING:
    from unet_core import registry
    from unet_core.array_prediction import predict_array
    from unet_core.config import ExperimentConfig


def __getattr__(name: str) -> Any:
    # ``registry`` pulls in importlib.metadata; keep ``import unet_core`` cheap for the CLI.
    if name == "registry":
        import importlib

        return importlib.import_module("unet_core.registry")
    if name == "predict_array":  # numpy and the window code only when used
        from unet_core.array_prediction import predict_array

        return predict_array
    raise AttributeError(f"module 'unet_core' has no attribute {name!r}")


def load_config(path: str, overrides: tuple[str, ...] | list[str] = ()) -> ExperimentConfig:
    """Read and validate a YAML experiment config (see :mod:`unet_core.config`)."""
    from unet_core.config import load_config as _load

    return _load(path, overrides)


def train(config: Any, *, resume: str | None = None, overwrite: bool = False) -> Any:
    """Train from a config (path, dict or ExperimentConfig); returns the trainer.

    ``resume`` continues a run from its checkpoint; ``overwrite`` starts over in a
    ``checkpoint_dir`` that holds another run (its files are moved to ``previous-runs/``).
    """
    from unet_core.engine.training import train as _train

    return _train(config, resume=resume, overwrite=overwrite)


def predict(config: Any) -> Any:
    """Predict from a config (path, dict or ExperimentConfig); returns the output paths."""
    from unet_core.engine.prediction import predict as _predict

    return _predict(config)
