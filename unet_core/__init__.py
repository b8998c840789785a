"""unet-core: validated, pluggable U-Nets for volumetric microscopy.

The public API is small: the registry verbs, ``load_config``, ``train`` and ``predict``
(which return :class:`~unet_core.results.TrainResult` / :class:`~unet_core.results.PredictResult`),
and ``predict_array`` (sliding-window inference on any array-like).
Heavy modules (torch, the engines) are imported only when these are called.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from unet_core.errors import ConfigError, DataError, PluginError, UserError
from unet_core.version import __version__

__all__ = [
    "ConfigError",
    "ConfigSource",
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
    from unet_core.results import PredictResult, TrainResult

#: What ``train``/``predict`` accept as a config: a loaded one, a mapping or a YAML path.
ConfigSource = Union["ExperimentConfig", Mapping[str, Any], str, os.PathLike[str]]


def __getattr__(name: str) -> Any:
    # ``registry`` pulls in importlib.metadata; keep ``import unet_core`` cheap for the CLI.
    if name == "registry":
        import importlib

        return importlib.import_module("unet_core.registry")
    if name == "predict_array":  # numpy and the window code only when used
        from unet_core.array_prediction import predict_array

        return predict_array
    raise AttributeError(f"module 'unet_core' has no attribute {name!r}")


def load_config(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read and validate a YAML experiment config (see :mod:`unet_core.config`)."""
    from unet_core.config import load_config as _load

    return _load(path, overrides)


def _as_config(config: ConfigSource) -> ExperimentConfig:
    from unet_core.config import as_config

    return as_config(os.fspath(config) if isinstance(config, os.PathLike) else config)


def train(
    config: ConfigSource,
    *,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train from a config; returns where the checkpoints are and how the run ended.

    ``resume`` continues a run from its checkpoint; ``device`` overrides the config's
    ``device``; ``overwrite`` starts over in a ``trainer.checkpoint_dir`` that holds another
    run (its files are moved to ``previous-runs/``, never deleted; refused otherwise).
    """
    from unet_core.results import TrainResult
    from unet_core.training.run import train as _train

    trainer = _train(_as_config(config), resume=resume, device=device, overwrite=overwrite)
    return TrainResult.from_trainer(trainer)


def predict(
    config: ConfigSource,
    *,
    model_path: str | os.PathLike[str] | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> PredictResult:
    """Predict every file of ``loaders.test``; returns the files written, one per input.

    ``model_path`` and ``device`` override the config's keys of the same names;
    ``overwrite`` allows replacing existing output files.
    """
    from unet_core.prediction.run import run_prediction
    from unet_core.results import PredictedFile, PredictResult

    cfg = _as_config(config)
    if model_path is not None:
        cfg = cfg.model_copy(update={"model_path": os.fspath(model_path)})
    written = run_prediction(cfg, device=device, overwrite=overwrite)
    return PredictResult(tuple(PredictedFile.from_written(w) for w in written))
