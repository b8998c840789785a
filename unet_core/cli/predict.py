"""``unet predict``: run a trained model over ``loaders.test`` (``predict3dunet`` is the same).

Outputs go to ``<loaders.output_dir or the input's folder>/<stem>_predictions.h5``; an
existing output is refused unless ``--overwrite``. ``--preview`` also writes
``<stem>_predictions_preview.png`` (raw | prediction | segmentation mid-slices).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unet_core.config import ExperimentConfig
    from unet_core.prediction.output import Written

import click

from unet_core.cli.options import config_option, set_option


@click.command("predict")
@config_option("YAML config with model, model_path, predictor and loaders.test.")
@set_option("model_path=best.pytorch")
@click.option(
    "--model",
    "model",
    type=click.Path(),
    help="Checkpoint or bioimage.io model package (zip, folder, rdf.yaml); sets model_path.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option("--preview", is_flag=True, help="Also write a PNG of the mid-slices per output.")
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="Predict on the Dask cluster of this scheduler (tcp://host:8786); sets "
    "distributed.scheduler.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Predict on a LocalCluster of N worker processes; sets distributed.workers.",
)
@click.option(
    "--memory-budget",
    "memory_budget",
    metavar="SIZE",
    default=None,
    help="Memory fast mode's tiles may use (e.g. 4GiB); sets predictor.memory_budget.",
)
@click.option(
    "--plan",
    is_flag=True,
    help="Print the tile and batch fast mode picks on this device (measured once, cached) "
    "and their voxels/s, without predicting.",
)
def predict(
    config_path: str,
    overrides: tuple[str, ...],
    model: str | None,
    overwrite: bool,
    preview: bool,
    scheduler: str | None,
    workers: int | None,
    memory_budget: str | None,
    plan: bool,
) -> None:
    """Predict every file of loaders.test with the checkpoint in model_path."""
    from unet_core.config import load_config
    from unet_core.prediction.run import run_prediction

    if model is not None:  # a JSON string is YAML, so any path survives the --set parser unchanged
        overrides = (*overrides, f"model_path={json.dumps(model)}")
    if memory_budget is not None:
        overrides = (*overrides, f"predictor.memory_budget={json.dumps(memory_budget)}")
    cfg = load_config(config_path, overrides)
    if plan:
        from unet_core.prediction.plan_report import show_plan

        show_plan(cfg)
        return
    if scheduler is not None or workers is not None:
        from unet_core.config.schema import DistributedConfig

        dist = cfg.distributed.model_dump() if cfg.distributed is not None else {}
        dist.update({k: v for k, v in (("scheduler", scheduler), ("workers", workers)) if v})
        cfg = cfg.model_copy(update={"distributed": DistributedConfig(**dist)})
    written = run_prediction(cfg, overwrite=overwrite, preview=preview)
    previews = _previews(cfg, written) if preview else {}
    _report(written, previews)


def _previews(cfg: ExperimentConfig, written: list[Written]) -> dict[str, Path]:
    from unet_core.prediction.output import preview_path
    from unet_core.prediction.preview import write_preview

    raw = "raw"
    if cfg.loaders is not None:
        name = cfg.loaders.dataset_setting("raw_internal_path", "raw")
        raw = name if isinstance(name, str) else name[0]
    dataset = getattr(cfg.predictor.config, "output_dataset", "predictions")
    out = {}
    for item in written:
        path = Path(item.path)
        png = preview_path(path)
        source = item.source if item.source and Path(item.source).is_file() else None
        out[item.path] = write_preview(
            path, png, source=source, raw_name=raw, prediction_name=dataset
        )
    return out


def _report(written: list[Written], previews: dict[str, Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{len(written)} prediction file(s) written")
    table.add_column("output")
    table.add_column("datasets")
    table.add_column("seconds", justify="right")
    table.add_column("score", justify="right")
    for item in written:
        seconds = item.stats.get("seconds")
        score = ""
        if item.metrics:
            score = f"{item.metrics['metric']} {item.metrics['mean']:.4f}"
        table.add_row(
            item.path,
            ", ".join(item.datasets),
            f"{seconds:.1f}" if seconds is not None else "",
            score,
        )
    console = Console()
    console.print(table)
    for png in previews.values():
        console.print(f"preview: {png}")
