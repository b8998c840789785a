"""Score prediction/segmentation files against ground truth with any registered metric
(``unet evaluate``).

A metric is called as in training: ``metric(prediction (1,C,Z,Y,X), target (1,...))``. The
target is the ground-truth volume after an optional label pipeline (the config's
``loaders.val.transformer.label``, e.g. BlobsToMask), so a metric sees the same target
layout here as during validation. uint8-quantised probabilities are mapped back to [0, 1].
A metric with ``scores`` (several named numbers, e.g. InstanceScores' F1 at two IoU thresholds
and panoptic quality) gives one row per number, labelled ``"<metric> <name>"``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from unet_core import registry
from unet_core.contracts import declared
from unet_core.engine.work_progress import current
from unet_core.errors import ConfigError, DataError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from unet_core.config import ComponentRef, ExperimentConfig

log = logging.getLogger(__name__)

MetricSpec = Union[Mapping[str, Any], str, "ComponentRef[BaseModel]"]


@dataclass
class Score:
    """One metric value for one prediction file."""

    prediction: str
    dataset: str
    ground_truth: str
    metric: str
    value: float
    higher_is_better: bool | None


def read_prediction(path: str | Path, dataset: str) -> np.ndarray:
    """A prediction dataset as float32 (uint8 probabilities rescaled) or integer labels; read
    through the volume format that claims the file."""
    from unet_core import formats

    if formats.scheme_of(str(path)) is None and not Path(path).exists():
        raise DataError(
            f"The prediction file {path} does not exist. Run `unet predict` first or fix the path."
        )
    reader = formats.for_path(str(path), key="--prediction").open(
        str(path), primary=dataset, key="--prediction"
    )
    try:
        array = np.asarray(reader.array(dataset, key="--dataset", in_memory=True))
        quantized = "quantization" in reader.info(dataset).attrs
    finally:
        reader.close()
    if quantized and array.dtype == np.uint8:
        return np.asarray(array, dtype=np.float32) / 255.0
    _refuse_nonfinite(array, f"prediction dataset {dataset!r} of {path}")
    if np.issubdtype(array.dtype, np.floating):
        return np.asarray(array, dtype=np.float32)
    return np.asarray(array)


def read_ground_truth(path: str | Path, dataset: str, raw_name: str = "raw") -> np.ndarray:
    """The whole ground-truth volume (HDF5 dataset or TIFF file)."""
    from unet_core.io.volume import Source

    with Source(str(path), raw_name=raw_name, key="ground truth") as src:
        gt = src.volume(dataset, key="ground-truth dataset").read()
    _refuse_nonfinite(gt, f"ground-truth dataset {dataset!r} of {path}")
    return gt


def _refuse_nonfinite(array: np.ndarray, what: str) -> None:
    """A NaN/inf voxel would make every score NaN or quietly count as background."""
    from unet_core.io.finite import NonFiniteCount

    count = NonFiniteCount()
    count.add(array)
    if count.total:
        raise DataError(
            f"The {what} holds {count.describe()} in (C,)Z,Y,X order; scores of non-finite "
            "values are meaningless, so nothing was scored or written. Predict again from "
            "finite inputs (see loaders.nonfinite) or fix the file."
        )


def _checked(value: float, metric: str, prediction: Any, ground_truth: Any) -> float:
    """A metric value as a score: NaN or inf is an error naming the pair, never a number."""
    if math.isfinite(value):
        return value
    reason = (
        "undefined for these inputs (e.g. adapted Rand error of a ground truth without "
        "labelled voxels)"
        if math.isnan(value)
        else "infinite (e.g. PSNR of a prediction identical to its target)"
    )
    raise DataError(
        f"The metric {metric} gave {value} for {prediction} against {ground_truth}: the score "
        f"is {reason}, and a report holds numbers only. Nothing was written. Leave this metric "
        "out (--metric) or this file out of the evaluation, or check the ground truth."
    )


def batch_of(array: Any) -> Any:
    """(Z,Y,X) -> (1,1,Z,Y,X); (C,Z,Y,X) -> (1,C,Z,Y,X) as a torch tensor."""
    import torch

    if isinstance(array, torch.Tensor):
        tensor = array
    else:
        data = np.asarray(array)
        if data.dtype == np.uint16 or data.dtype == np.uint32:
            data = data.astype(np.int64)  # torch has no unsigned 16/32-bit tensors
        tensor = torch.from_numpy(np.ascontiguousarray(data))
    if tensor.dim() == 3:
        tensor = tensor[None]
    return tensor[None]


def target_of(gt: np.ndarray, pipeline_specs: Sequence[Any] | None) -> Any:
    """The ground truth as the metric's target batch, through the label pipeline if any."""
    if pipeline_specs:
        from unet_core.engine.pipeline import build_pipeline

        pipeline = build_pipeline(list(pipeline_specs), None, where="label transformer")
        return batch_of(pipeline(np.array(gt), 0))
    return batch_of(gt)


def _metric(spec: MetricSpec) -> tuple[str, Any]:
    name, config = registry.validate("metrics", spec)
    return name, registry.build(registry.get("metrics", name), config)


def score_file(
    prediction: str | Path,
    dataset: str,
    ground_truth: str | Path,
    gt_dataset: str,
    metrics: Sequence[MetricSpec],
    *,
    label_pipeline: Sequence[Any] | None = None,
    raw_name: str = "raw",
) -> list[Score]:
    """Every metric for one prediction file against one ground-truth volume."""
    built = [_metric(spec) for spec in metrics]  # bad metric specs fail before any reading
    pred = read_prediction(prediction, dataset)
    gt = read_ground_truth(ground_truth, gt_dataset, raw_name)
    if tuple(pred.shape[-3:]) != tuple(gt.shape[-3:]):
        raise DataError(
            f"The prediction {prediction}:{dataset} has shape {pred.shape} but the ground "
            f"truth {ground_truth}:{gt_dataset} has {gt.shape}; their (Z,Y,X) must match. "
            "Check that the files belong together."
        )
    target = target_of(gt, label_pipeline)
    batch = batch_of(pred)
    out = []
    for name, metric in built:
        better = bool(declared("metrics", metric, "higher_is_better"))
        for label, value in _values(name, metric, batch, target).items():
            number = float(value.item() if hasattr(value, "item") else value)
            number = _checked(number, label, prediction, ground_truth)
            out.append(Score(str(prediction), dataset, str(ground_truth), label, number, better))
    return out


def _values(name: str, metric: Any, batch: Any, target: Any) -> dict[str, Any]:
    """``{row label: value}``: the metric's value, or each of its named ``scores``."""
    several = declared("metrics", metric, "scores")
    if several is None:
        return {name: metric(batch, target)}
    return {f"{name} {key}": value for key, value in several(batch, target).items()}


def config_pairs(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(prediction file, input file) per test file of a config, as `unet predict` names them."""
    from unet_core.engine.data import input_files
    from unet_core.prediction.output_files import output_file

    if cfg.loaders is None or cfg.loaders.test is None:
        raise ConfigError("loaders.test is missing: it lists the files whose predictions to score.")
    from unet_core.prediction.output_plan import check_plan, make_plan, without_own_outputs

    fmt, out_dir = _output_format(cfg), cfg.loaders.output_dir
    plan = make_plan(input_files(cfg, "test"), lambda f: [output_file(f, out_dir, fmt)])
    plan, _ = without_own_outputs(plan)  # earlier predictions in an input folder
    check_plan(plan)  # two inputs, one prediction: ambiguous, refused
    return [(str(outputs[0]), source) for source, outputs in plan]


def check_recorded_source(prediction: str | Path, source: str | Path) -> None:
    """Refuse a prediction that records (``unet_source``) another input than ``source``."""
    from unet_core.prediction.output_plan import recorded_source

    recorded = recorded_source(prediction)
    if recorded is None:
        return  # written by an older version or another tool: paired by name only
    if os.path.realpath(str(recorded)) != os.path.realpath(source):
        raise DataError(
            f"The prediction {prediction} was predicted from {recorded}, not from {source}, "
            "whose ground truth the config pairs it with (by name). Scoring it would compare "
            "unrelated volumes. Predict again with this config (loaders.test and "
            "loaders.output_dir as here), or score the file with --prediction/--ground-truth."
        )


def _output_format(cfg: ExperimentConfig) -> str:
    """The predictor's output format (its own default when the YAML does not set it; a
    third-party predictor without the key writes HDF5)."""
    if cfg.predictor is None:
        return "hdf5"
    return str(getattr(cfg.predictor.config, "output_format", "hdf5"))


def evaluate_config(
    cfg: ExperimentConfig, metrics: Sequence[MetricSpec] = (), dataset: str | None = None
) -> list[Score]:
    """Score each test file's prediction against its ``label_internal_path``."""
    specs = list(metrics) or ([cfg.eval_metric] if cfg.eval_metric else [])
    if not specs:
        raise ConfigError(
            "No metric to evaluate: the config has no eval_metric and no --metric was given."
        )
    loaders = cfg.loaders
    gt_name = str(
        (loaders.dataset_setting("label_internal_path", None) if loaders else None) or "label"
    )
    raw_name = loaders.dataset_setting("raw_internal_path", "raw") if loaders else "raw"
    raw_name = raw_name if isinstance(raw_name, str) else raw_name[0]
    dataset = dataset or str(getattr(cfg.predictor.config, "output_dataset", "predictions"))
    val = cfg.loaders.val if cfg.loaders is not None else None
    pipeline = val.transformer.label if val is not None else None
    scores: list[Score] = []
    pairs = config_pairs(cfg)
    for pred, source in pairs:
        if Path(pred).is_file():
            check_recorded_source(pred, source)
    progress = current()
    progress.begin("evaluate", len(pairs))
    for pred, source in pairs:
        progress.begin_file(Path(pred).name, len(specs), unit="metrics")
        scores += score_file(
            pred, dataset, source, gt_name, specs, label_pipeline=pipeline, raw_name=raw_name
        )
        progress.advance(len(specs))
        progress.end_file()
    return scores


def write_reports(scores: Sequence[Score], json_path: Path | None, csv_path: Path | None) -> None:
    """The scores as JSON (``{"scores": [records]}``) and CSV (one row per score)."""
    from unet_core.prediction.score_reports import write_reports as write

    write(scores, json_path, csv_path, list(Score.__dataclass_fields__))
