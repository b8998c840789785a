"""``predict(config)``: model + checkpoint + test datasets -> one output file per input.

The engine builds everything through the registry (model, predictor, optional
postprocessor, datasets via :mod:`unet_core.engine.data`), so a third-party predictor is run
exactly like a built-in. A predictor is called once per test dataset and returns the files it
completed; each one is announced through the ``unet_prediction_written`` hook.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unet_core import registry
from unet_core.config.refs import ComponentRef
from unet_core.config.schema import DEFAULT_NAMES, ExperimentConfig
from unet_core.contracts import declared
from unet_core.errors import ConfigError
from unet_core.prediction.output import (
    Written,
    check_writable,
    preview_path,
)
from unet_core.prediction.stop import raise_if_stopped, stop_on_signals

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


def build_model(cfg: ExperimentConfig) -> torch.nn.Module:
    """The configured model with the weights of ``model_path`` (strict).

    A bioimage.io model package as ``model_path`` brings its own network (see
    :mod:`unet_core.exchange.package_model`); the config's model section is then not used.
    """
    from unet_core.engine.checkpoint import load_model_weights
    from unet_core.exchange.package_model import package_model_or_none

    packaged: torch.nn.Module | None = package_model_or_none(cfg.model_path)
    if packaged is not None:
        _warn_on_other_preprocessing(cfg)
        return packaged
    model: torch.nn.Module = registry.create("models", cfg.model)
    assert cfg.model_path is not None
    load_model_weights(model, cfg.model_path, model_config=cfg.model.dump())
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
    cfg: ExperimentConfig, file_path: str, overrides: Mapping[str, Any]
) -> ExperimentConfig:
    """A typed copy of ``cfg`` narrowed to one file, with the predictor's patch/stride/halo.

    At test time there is no label, so every slice builder is a plain grid; the predictor's
    values (already typed) replace the builder's, and nothing is validated again.
    """
    assert cfg.loaders is not None and cfg.loaders.test is not None
    test = cfg.loaders.test
    builder = test.slice_builder
    if builder is None:
        builder = ComponentRef.from_spec(
            "slice_builders",
            {"name": DEFAULT_NAMES["slice_builder"], **overrides},
            ("loaders", "test", "slice_builder"),
        )
    else:
        builder = builder.with_params(**overrides)
    test = test.model_copy(update={"file_paths": [str(file_path)], "slice_builder": builder})
    loaders = cfg.loaders.model_copy(update={"test": test})
    return cfg.model_copy(update={"loaders": loaders})


def _volume_shape(cfg: ExperimentConfig, file_path: str) -> tuple[int, ...]:
    from unet_core.io.volume import Source

    assert cfg.loaders is not None
    raw = cfg.loaders.dataset_setting("raw_internal_path", "raw")
    with Source(file_path, raw_name=raw if isinstance(raw, str) else raw[0]) as src:
        return src.volume(raw, key="loaders.raw_internal_path").spatial_shape


def test_datasets(cfg: ExperimentConfig, predictor: Predictor) -> Iterator[Dataset[Any]]:
    """The test datasets, one file at a time; re-tiled when the predictor chooses tiles."""
    from unet_core.engine.data import build_test_datasets, input_files

    overrides_for = declared("predictors", predictor, "slice_builder_overrides")
    if overrides_for is None or not declared("predictors", predictor, "retiles"):
        yield from build_test_datasets(cfg)
        return
    for path in input_files(cfg, "test"):
        overrides = overrides_for(_volume_shape(cfg, path))
        narrowed = _file_config(cfg, path, overrides or {})
        yield from build_test_datasets(narrowed)


def run_prediction(
    config: ConfigLike,
    *,
    device: str | None = None,
    overwrite: bool = False,
    preview: bool = False,
) -> list[Written]:
    """Predict every test file; returns the written files with their metrics and timings.

    ``device`` overrides the config's ``device`` key. ``preview``: the caller will write
    ``<output stem>_preview.png`` beside each output (checked for collisions with the rest).
    """
    from unet_core.engine.device import resolve_device
    from unet_core.hooks import plugin_manager

    cfg = _as_config(config)
    check_predict_config(cfg)
    torch_device = resolve_device(device or cfg.device)
    model = build_model(cfg)
    hook = plugin_manager().hook
    written: list[Written] = []
    if cfg.distributed is not None:
        from unet_core.prediction.dask_run import run_distributed

        written = run_distributed(cfg, model, torch_device, overwrite=overwrite)
        for item in written:
            hook.unet_prediction_written(path=item.path, datasets=list(item.datasets))
        _log_metrics(written)
        return written
    predictor = build_predictor(cfg, model, torch_device, overwrite=overwrite)
    cfg = prepare_outputs(cfg, predictor, preview=preview)
    with stop_on_signals():
        for dataset in test_datasets(cfg, predictor):
            raise_if_stopped()
            for item in predictor(dataset):
                hook.unet_prediction_written(path=item.path, datasets=list(item.datasets))
                written.append(item)
    _log_metrics(written)
    return written


def prepare_outputs(
    cfg: ExperimentConfig, predictor: Any, *, preview: bool = False
) -> ExperimentConfig:
    """Before any work: skip earlier outputs of this config found among the inputs, refuse
    shared outputs (or outputs that are inputs), and remove the temporary files a killed
    earlier run left in the output folders (with a note). Returns the config to run."""
    from unet_core.engine.data import input_files
    from unet_core.io.scratch import remove_stale
    from unet_core.prediction.output_plan import check_plan, make_plan, without_own_outputs

    planned = getattr(predictor, "planned_outputs", None)
    if not callable(planned):
        return cfg

    def outputs_of(source: str) -> list[Path]:
        outputs = [Path(p) for p in planned(source)]
        if preview and outputs:  # previews read any format's output
            outputs.append(preview_path(outputs[0]))
        return outputs

    plan, dropped = without_own_outputs(make_plan(input_files(cfg, "test"), outputs_of))
    if dropped:
        warnings.warn(
            f"Skipped {len(dropped)} earlier prediction(s) of these inputs found among the "
            f"input files: {', '.join(dropped[:3])}{' ...' if len(dropped) > 3 else ''}.",
            stacklevel=2,
        )
        cfg = _with_test_files(cfg, [source for source, _ in plan])
    check_plan(plan)
    replace = bool(getattr(predictor, "overwrite", False))
    for _, outputs in plan:  # an existing output stops the run before any work, not midway
        for out in outputs:
            check_writable(out, replace)
    folders = {out.parent for _, outputs in plan for out in outputs}
    for folder in sorted(folders):
        removed = remove_stale(folder)
        if removed:
            warnings.warn(
                f"Removed {len(removed)} unfinished file(s) that a killed earlier prediction "
                f"left in {folder}: {', '.join(p.name for p in removed)}.",
                stacklevel=2,
            )
    return cfg


def _with_test_files(cfg: ExperimentConfig, files: list[str]) -> ExperimentConfig:
    data = cfg.model_dump()
    data["loaders"]["test"]["file_paths"] = files
    return ExperimentConfig.model_validate(data)


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
