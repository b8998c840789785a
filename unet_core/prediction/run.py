"""``predict(config)``: model + checkpoint + test datasets -> one output file per input.

The engine builds everything through the registry (model, predictor, optional
postprocessor, datasets via :mod:`unet_core.engine.data`), so a third-party predictor is run
exactly like a built-in. A predictor is called once per test dataset and returns the files it
completed; each one is announced through the ``unet_prediction_written`` hook.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unet_core.config.schema import ExperimentConfig
from unet_core.engine.data import input_files
from unet_core.engine.work_progress import current
from unet_core.errors import DataError
from unet_core.prediction.building import (  # noqa: F401 - re-exported for callers
    ConfigLike,
    _as_config,
    build_model,
    build_predictor,
    check_predict_config,
    test_datasets,
    with_local_model,
)
from unet_core.prediction.output import (
    EXISTING_ADVICE,
    NAMED_FILE_ADVICE,
    Written,
    check_writable,
    preview_path,
)
from unet_core.prediction.stop import raise_if_stopped, stop_on_signals

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


def run_prediction(
    config: ConfigLike,
    *,
    device: str | None = None,
    overwrite: bool = False,
    preview: bool = False,
    final_name: Callable[[Path], Path] | None = None,
) -> list[Written]:
    """Predict every test file; returns the written files with their metrics and timings.

    ``device`` overrides the config's ``device`` key. ``preview``: the caller will write
    ``<output stem>_preview.png`` beside each output (checked for collisions with the rest).
    ``final_name``: where the caller will move each output afterwards (``unet predict -o
    FILE``), so that those names are the ones checked before any work.
    """
    from unet_core.engine.device import resolve_device
    from unet_core.hooks import plugin_manager

    cfg = _as_config(config)
    check_predict_config(cfg)
    cfg = with_local_model(cfg)
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
    cfg = prepare_outputs(cfg, predictor, preview=preview, final_name=final_name)
    progress = current()
    progress.begin("predict", len(input_files(cfg, "test")))
    with stop_on_signals():
        for dataset in test_datasets(cfg, predictor):
            raise_if_stopped()
            name = Path(str(getattr(dataset, "file_path", "") or "input")).name
            progress.begin_file(name, _units(dataset))
            try:
                for item in predictor(dataset):
                    hook.unet_prediction_written(path=item.path, datasets=list(item.datasets))
                    written.append(item)
            except DataError as exc:
                raise _naming_input(exc, getattr(dataset, "file_path", None)) from None
            progress.end_file()
    _log_metrics(written)
    return written


def _naming_input(exc: DataError, path: Any) -> DataError:
    """``exc`` with the input it came from named, where it does not say (a model's complaint
    about the input's channels knows shapes, not files)."""
    message = str(exc)
    if not path or str(path) in message:
        return exc
    return DataError(f"Predicting {path}: {message}")


def _units(dataset: Any) -> int | None:
    """Patches of a patch dataset (what forward passes count), None if it cannot say."""
    try:
        return len(dataset)
    except TypeError:
        return None


def prepare_outputs(
    cfg: ExperimentConfig,
    predictor: Any,
    *,
    preview: bool = False,
    final_name: Callable[[Path], Path] | None = None,
) -> ExperimentConfig:
    """Before any work: skip earlier outputs of this config found among the inputs, refuse
    shared outputs (or outputs that are inputs), and remove the temporary files a killed
    earlier run left in the output folders (with a note). Returns the config to run.

    ``final_name`` maps a planned output to the name it will finally have (see
    :func:`run_prediction`); the checks apply to those names."""
    from unet_core.io.scratch import remove_stale
    from unet_core.prediction.output_plan import (
        FILE_ADVICE,
        FOLDER_ADVICE,
        check_plan,
        make_plan,
        without_own_outputs,
    )

    planned = getattr(predictor, "planned_outputs", None)
    if not callable(planned):
        return cfg

    def outputs_of(source: str) -> list[Path]:
        outputs = [Path(p) for p in planned(source)]
        if final_name is not None:
            outputs = [final_name(p) for p in outputs]
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
    check_plan(plan, advice=FILE_ADVICE if final_name is not None else FOLDER_ADVICE)
    replace = bool(getattr(predictor, "overwrite", False))
    advice = NAMED_FILE_ADVICE if final_name is not None else EXISTING_ADVICE
    for _, outputs in plan:  # an existing output stops the run before any work, not midway
        for out in outputs:
            check_writable(out, replace, advice, make_folder=False)
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
