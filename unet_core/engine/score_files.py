"""Score prediction/segmentation files against ground truth with any registered metric
(``unet evaluate``).

A metric is called as in training: ``metric(prediction (1,C,Z,Y,X), target (1,...))``. The
target is the ground-truth volume after an optional label pipeline (the config's
``loaders.val.transformer.label``, e.g. BlobsToMask), so a metric sees the same target
layout here as during validation. uint8-quantised probabilities are mapped back to [0, 1].
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from unet_core import registry
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
    """A prediction dataset as float32 (uint8 probabilities rescaled) or integer labels."""
    import h5py

    from unet_core.io.volume import list_datasets

    if not Path(path).is_file():
        raise DataError(
            f"The prediction file {path} does not exist. Run `unet predict` first or fix the path."
        )
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"Cannot open the prediction file {path}: {exc}. Expected an HDF5 file written by "
            "`unet predict`."
        ) from None
    with f:
        if dataset not in f:
            raise DataError(
                f"The prediction file {path} has no dataset {dataset!r}; it holds "
                f"{', '.join(list_datasets(f)) or 'nothing'}. Pick one with --dataset."
            )
        ds = f[dataset]
        array = ds[...]
        if "quantization" in ds.attrs and array.dtype == np.uint8:
            return np.asarray(array, dtype=np.float32) / 255.0
    if np.issubdtype(array.dtype, np.floating):
        return np.asarray(array, dtype=np.float32)
    return np.asarray(array)


def read_ground_truth(path: str | Path, dataset: str, raw_name: str = "raw") -> np.ndarray:
    """The whole ground-truth volume (HDF5 dataset or TIFF file)."""
    from unet_core.io.volume import Source

    with Source(str(path), raw_name=raw_name, key="ground truth") as src:
        return src.volume(dataset, key="ground-truth dataset").read()


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
        value = metric(batch, target)
        number = float(value.item() if hasattr(value, "item") else value)
        better = getattr(metric, "higher_is_better", None)
        out.append(Score(str(prediction), dataset, str(ground_truth), name, number, better))
    return out


def config_pairs(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(prediction file, input file) per test file of a config, as `unet predict` names them."""
    from unet_core.engine.data import input_files
    from unet_core.engine.prediction_output import output_path

    if cfg.loaders is None or cfg.loaders.test is None:
        raise ConfigError("loaders.test is missing: it lists the files whose predictions to score.")
    files = input_files(cfg, "test")
    return [(str(output_path(f, cfg.loaders.output_dir)), f) for f in files]


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
    for pred, source in config_pairs(cfg):
        scores += score_file(
            pred, dataset, source, gt_name, specs, label_pipeline=pipeline, raw_name=raw_name
        )
    return scores


def write_reports(scores: Sequence[Score], json_path: Path | None, csv_path: Path | None) -> None:
    """The scores as JSON (``{"scores": [records]}``) and CSV (one row per score)."""
    rows = [asdict(s) for s in scores]
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"scores": rows}, indent=2) + "\n")
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(Score.__dataclass_fields__))
            writer.writeheader()
            writer.writerows(rows)
