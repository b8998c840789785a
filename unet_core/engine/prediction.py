"""``predict(config)``: model + checkpoint + test datasets -> one output file per input.

The engine builds everything through the registry (model, predictor, optional
postprocessor, datasets via :mod:`unet_core.engine.data`), so a third-party predictor is run
exactly like a built-in. A predictor is called once per test dataset and returns the files it
completed; each one is announced through the ``unet_prediction_written`` hook.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from unet_core import registry
from unet_core.config.schema import ExperimentConfig
from unet_core.engine.prediction_output import Written
from unet_core.errors import ConfigError

log = logging.getLogger(__name__)

ConfigLike = ExperimentConfig | Mapping[str, Any] | str | Path


def _as_config(config: ConfigLike) -> ExperimentConfig:
    from unet_core.config import as_config

    return as_config(config)


def check_predict_config(cfg: ExperimentConfig) -> None:
    """What prediction needs beyond the schema, in one paragraph each."""
    if not cfg.model_path:
        raise ConfigError(
            "model_path is missing: prediction needs the checkpoint to load (e.g. "
            "model_path: checkpoints/best_checkpoint.pytorch written by `unet train` or "
            "pytorch-3dunet). Add it to the config or pass --set model_path=FILE."
        )
    if cfg.loaders is None or cfg.loaders.test is None:
        raise ConfigError(
            "loaders.test is missing: prediction needs the files to predict (loaders.test."
            "file_paths) and how to cut them into patches (loaders.test.slice_builder). "
            "Add a loaders.test section."
        )


def build_model(cfg: ExperimentConfig) -> Any:
    """The configured model with the weights of ``model_path`` (strict).

    A bioimage.io model package as ``model_path`` brings its own network (see
    :mod:`unet_core.exchange.package_model`); the config's model section is then not used.
    """
    from unet_core.engine.checkpoint import load_model_weights
    from unet_core.exchange.package_model import package_model_or_none

    packaged = package_model_or_none(cfg.model_path)
    if packaged is not None:
        _warn_on_other_preprocessing(cfg)
        return packaged
    model = registry.create("models", cfg.model)
    assert cfg.model_path is not None
    load_model_weights(model, cfg.model_path, model_config=cfg.model)
    return model


def _warn_on_other_preprocessing(cfg: ExperimentConfig) -> None:
    from unet_core.exchange.package_model import check_preprocessing

    test = cfg.loaders.test if cfg.loaders is not None else None
    if cfg.model_path is None or test is None:
        return
    problem = check_preprocessing(cfg.model_path, [dict(t) for t in test.transformer.raw])
    if problem:
        log.warning(problem)


def build_predictor(
    cfg: ExperimentConfig, model: Any, device: Any, *, overwrite: bool = False
) -> Any:
    """The configured predictor, with the postprocessor it should apply."""
    post = registry.create("postprocessors", cfg.postprocessor) if cfg.postprocessor else None
    loaders = cfg.loaders
    return registry.create(
        "predictors",
        cfg.predictor,
        model=model,
        device=device,
        output_dir=loaders.output_dir if loaders is not None else None,
        experiment=cfg,
        postprocessor=post,
        overwrite=overwrite,
    )


def _file_config(cfg: ExperimentConfig, file_path: str, overrides: Mapping[str, Any]) -> Any:
    """The config narrowed to one file, with the predictor's patch/stride/halo."""
    data = cfg.model_dump()
    test = data["loaders"]["test"]
    test["file_paths"] = [str(file_path)]
    builder = dict(test.get("slice_builder") or {"name": "SliceBuilder"})
    builder.update(copy.deepcopy(dict(overrides)))
    builder.setdefault("name", "SliceBuilder")
    if builder["name"] == "FilterSliceBuilder":  # no label at test time: a plain grid
        builder["name"] = "SliceBuilder"
        for key in ("threshold", "slack_acceptance", "ignore_index"):
            builder.pop(key, None)
    test["slice_builder"] = builder
    return ExperimentConfig.model_validate(data)


def _volume_shape(cfg: ExperimentConfig, file_path: str) -> tuple[int, ...]:
    from unet_core.io.volume import Source

    assert cfg.loaders is not None
    raw = cfg.loaders.dataset_params().get("raw_internal_path", "raw")
    with Source(file_path, raw_name=raw if isinstance(raw, str) else raw[0]) as src:
        return src.volume(raw, key="loaders.raw_internal_path").spatial_shape


def test_datasets(cfg: ExperimentConfig, predictor: Any) -> Iterator[Any]:
    """The test datasets, one file at a time; re-tiled when the predictor chooses tiles."""
    from unet_core.engine.data import build_test_datasets, input_files

    overrides_for = getattr(predictor, "slice_builder_overrides", None)
    if not callable(overrides_for) or not getattr(predictor, "retiles", False):
        yield from build_test_datasets(cfg)
        return
    for path in input_files(cfg, "test"):
        overrides = overrides_for(_volume_shape(cfg, path))
        narrowed = _file_config(cfg, path, overrides or {})
        yield from build_test_datasets(narrowed)


def run_prediction(config: ConfigLike, *, overwrite: bool = False) -> list[Written]:
    """Predict every test file; returns the written files with their metrics and timings."""
    from unet_core.engine.device import resolve_device
    from unet_core.hooks import plugin_manager

    cfg = _as_config(config)
    check_predict_config(cfg)
    device = resolve_device(cfg.device)
    model = build_model(cfg)
    predictor = build_predictor(cfg, model, device, overwrite=overwrite)
    hook = plugin_manager().hook
    written: list[Written] = []
    for dataset in test_datasets(cfg, predictor):
        for item in predictor(dataset):
            hook.unet_prediction_written(path=item.path, datasets=list(item.datasets))
            written.append(item)
    _log_metrics(written)
    return written


def predict(config: ConfigLike, *, overwrite: bool = False) -> list[str]:
    """Predict every file of ``loaders.test``; returns the output paths."""
    return [item.path for item in run_prediction(config, overwrite=overwrite)]


def _log_metrics(written: list[Written]) -> None:
    scored = [w.metrics for w in written if w.metrics]
    if not scored:
        return
    means = [m["mean"] for m in scored]
    per_class = np.mean([m["per_class"] for m in scored], axis=0)
    log.info(
        "%s over %d file(s): mean %.4f, per class %s",
        scored[0]["metric"],
        len(scored),
        float(np.mean(means)),
        np.round(per_class, 4).tolist(),
    )
