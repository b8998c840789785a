"""What a prediction run is built from: the checked config, the model (checkpoint or model
package), the predictor and one test dataset per input file. Shared by the in-process run
(:mod:`unet_core.prediction.run`) and the Dask run (:mod:`unet_core.prediction.dask_run`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core import registry
from unet_core.config.refs import ComponentRef
from unet_core.config.schema import DEFAULT_NAMES, ExperimentConfig
from unet_core.contracts import declared
from unet_core.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch.utils.data import Dataset

    from unet_core.interfaces import Predictor

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


def with_local_model(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` with a ``model_path`` URL or ``bioimageio:ID`` replaced by its cached download
    (:mod:`unet_core.exchange.remote_package`); unchanged for a local path."""
    from unet_core.exchange.remote_package import is_remote, local_model_path

    if cfg.model_path is None or not is_remote(cfg.model_path):
        return cfg
    return cfg.model_copy(update={"model_path": local_model_path(cfg.model_path)})


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """The configured model with the weights of ``model_path`` (strict).

    A bioimage.io model package as ``model_path`` brings its own network (see
    :mod:`unet_core.exchange.package_model`); the config's model section is then not used.
    """
    from unet_core.engine.checkpoint import load_model_weights
    from unet_core.exchange.package_model import package_model_or_none

    packaged: torch.nn.Module | None = package_model_or_none(cfg.model_path)
    if packaged is not None:
        _warn_on_replaced_transforms(cfg)
        return packaged
    model: torch.nn.Module = registry.create("models", cfg.model)
    assert cfg.model_path is not None
    load_model_weights(model, cfg.model_path, model_config=cfg.model.dump())
    return model


def _warn_on_replaced_transforms(cfg: ExperimentConfig) -> None:
    """The package's input steps (checked here, before any work) replace the config's."""
    from unet_core.exchange.package_processing import input_steps, replaced_warning

    test = cfg.loaders.test if cfg.loaders is not None else None
    steps = input_steps(cfg.model_path)
    if steps is None or cfg.model_path is None or test is None:
        return
    problem = replaced_warning(cfg.model_path, steps, [dict(t) for t in test.transformer.raw])
    if problem:
        log.warning(problem)


def build_predictor(
    cfg: ExperimentConfig,
    model: torch.nn.Module,
    device: torch.device,
    *,
    overwrite: bool = False,
) -> Predictor:
    """The configured predictor, with the postprocessor it should apply."""
    post = registry.create("postprocessors", cfg.postprocessor) if cfg.postprocessor else None
    loaders = cfg.loaders
    predictor: Predictor = registry.create(
        "predictors",
        cfg.predictor,
        model=model,
        device=device,
        output_dir=loaders.output_dir if loaders is not None else None,
        experiment=cfg,
        postprocessor=post,
        overwrite=overwrite,
    )
    return predictor


def _file_config(
    cfg: ExperimentConfig,
    file_path: str,
    overrides: Mapping[str, Any] | None,
    raw_transforms: list[ComponentRef[Any]] | None = None,
) -> ExperimentConfig:
    """A typed copy of ``cfg`` narrowed to one file, with the predictor's patch/stride/halo
    (``overrides``) and a model package's transforms for this file (``raw_transforms``).

    At test time there is no label, so every slice builder is a plain grid; the predictor's
    values (already typed) replace the builder's, and nothing is validated again.
    """
    assert cfg.loaders is not None and cfg.loaders.test is not None
    test = cfg.loaders.test
    builder = test.slice_builder
    if overrides is None:
        pass
    elif builder is None:
        builder = ComponentRef.from_spec(
            "slice_builders",
            {"name": DEFAULT_NAMES["slice_builder"], **overrides},
            ("loaders", "test", "slice_builder"),
        )
    else:
        builder = builder.with_params(**overrides)
    update: dict[str, Any] = {"file_paths": [str(file_path)], "slice_builder": builder}
    if raw_transforms is not None:
        transformer = test.transformer.model_copy(update={"raw": raw_transforms})
        update["transformer"] = transformer
    test = test.model_copy(update=update)
    loaders = cfg.loaders.model_copy(update={"test": test})
    return cfg.model_copy(update={"loaders": loaders})


def _volume_shape(cfg: ExperimentConfig, file_path: str) -> tuple[int, ...]:
    from unet_core.io.volume import Source

    assert cfg.loaders is not None
    raw = cfg.loaders.dataset_setting("raw_internal_path", "raw")
    with Source(file_path, raw_name=raw if isinstance(raw, str) else raw[0]) as src:
        return src.volume(raw, key="loaders.raw_internal_path").spatial_shape


def _package_transforms(
    cfg: ExperimentConfig, file_path: str, steps: list[Any]
) -> list[ComponentRef[Any]]:
    """The test transforms of one file predicted with a model package: its input steps with
    the statistics of this file's whole raw volume."""
    from unet_core.exchange.package_processing import file_transforms
    from unet_core.io.volume import Source

    assert cfg.loaders is not None and cfg.loaders.test is not None
    raw = cfg.loaders.dataset_setting("raw_internal_path", "raw")
    configured = [dict(t) for t in cfg.loaders.test.transformer.raw]
    with Source(file_path, raw_name=raw if isinstance(raw, str) else raw[0]) as src:
        volume = src.volume(raw, key="loaders.raw_internal_path")
        specs = file_transforms(steps, volume, configured)
    where = ("loaders", "test", "transformer", "raw")
    return [ComponentRef.from_spec("transforms", s, (*where, i)) for i, s in enumerate(specs)]


def test_datasets(cfg: ExperimentConfig, predictor: Predictor) -> Iterator[Dataset[Any]]:
    """The test datasets, one file at a time; re-tiled when the predictor chooses tiles, and
    normalised as a model package says when ``model_path`` is one."""
    from unet_core.engine.data import build_test_datasets, input_files
    from unet_core.exchange.package_processing import input_steps

    overrides_for = declared("predictors", predictor, "slice_builder_overrides")
    retiles = overrides_for is not None and declared("predictors", predictor, "retiles")
    steps = input_steps(cfg.model_path)
    if not retiles and steps is None:
        yield from build_test_datasets(cfg)
        return
    for path in input_files(cfg, "test"):
        overrides = (overrides_for(_volume_shape(cfg, path)) or {}) if retiles else None
        transforms = _package_transforms(cfg, path, steps) if steps is not None else None
        narrowed = _file_config(cfg, path, overrides, transforms)
        yield from build_test_datasets(narrowed)
