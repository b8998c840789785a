"""``unet predict``: run a trained model over ``loaders.test`` (``predict3dunet`` is the same),
or, without a config, ``unet predict CHECKPOINT INPUT... -o OUT`` (see predict_checkpoint.py).

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

from unet_core.cli.options import config_option, device_option, output_option, set_option


@click.command("predict")
@click.argument("arguments", nargs=-1, metavar="[CHECKPOINT INPUT...]", type=click.Path())
@config_option(
    "YAML config with model, model_path, predictor and loaders.test (not needed with "
    "CHECKPOINT INPUT...: a checkpoint of `unet train` carries its config).",
    required=False,
)
@set_option("model_path=best.pytorch")
@output_option(
    "Output: a file (out.h5, out.tif, out.ome.zarr; the suffix picks the format) for one "
    "input, else a folder for <input>_predictions files (sets loaders.output_dir)."
)
@click.option(
    "--fast",
    is_flag=True,
    help="Recommended for new work: gaussian-blended tiles and batches sized for the device "
    "(several times faster, no seams). Without it the reference's (pytorch-3dunet) patching "
    "is reproduced to ~1e-5: keep that for configs that come from pytorch-3dunet.",
)
@device_option()
@click.option(
    "--precision",
    type=click.Choice(["none", "bf16", "fp16", "auto"]),
    default=None,
    help="Autocast precision of the forward pass (sets predictor.amp); fp16 needs CUDA.",
)
@click.option(
    "--postprocess",
    metavar="NAME",
    default=None,
    help="Also write instance labels with this postprocessor (e.g. ConnectedComponents).",
)
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
    arguments: tuple[str, ...],
    config_path: str | None,
    overrides: tuple[str, ...],
    output: str | None,
    fast: bool,
    device: str | None,
    precision: str | None,
    postprocess: str | None,
    model: str | None,
    overwrite: bool,
    preview: bool,
    scheduler: str | None,
    workers: int | None,
    memory_budget: str | None,
    plan: bool,
) -> None:
    """Predict INPUT files with CHECKPOINT (its stored config supplies model, normalisation
    and patching), or every file of loaders.test of --config FILE.

    \b
      unet predict run/best_checkpoint.pytorch vol.h5 -o vol_pred.h5 --fast
      unet predict run/best_checkpoint.pytorch a.h5 b.tif -o predictions/
      unet predict --config test_config.yml

    Use --fast for new work; the default reproduces pytorch-3dunet's output.
    """
    from unet_core.cli.predict_checkpoint import flag_overrides

    overrides = (
        *flag_overrides(fast=fast, precision=precision, postprocess=postprocess),
        *overrides,
    )
    if model is not None:  # a JSON string is YAML, so any path survives the --set parser unchanged
        overrides = (*overrides, f"model_path={json.dumps(model)}")
    if memory_budget is not None:
        overrides = (*overrides, f"predictor.memory_budget={json.dumps(memory_budget)}")
    cfg = _load(arguments, config_path, overrides)
    if plan:
        from unet_core.prediction.plan_report import show_plan

        show_plan(cfg)
        return
    if scheduler is not None or workers is not None:
        from unet_core.config.schema import DistributedConfig

        dist = cfg.distributed.model_dump() if cfg.distributed is not None else {}
        dist.update({k: v for k, v in (("scheduler", scheduler), ("workers", workers)) if v})
        cfg = cfg.model_copy(update={"distributed": DistributedConfig(**dist)})
    written = _run(cfg, output, device=device, overwrite=overwrite, preview=preview)
    previews = _previews(cfg, written) if preview else {}
    _report(written, previews)


def _load(
    arguments: tuple[str, ...], config_path: str | None, overrides: tuple[str, ...]
) -> ExperimentConfig:
    """The config of either form: --config FILE, or CHECKPOINT INPUT... (no config file)."""
    from unet_core.config import load_config
    from unet_core.errors import UsageError

    if config_path is not None:
        if arguments:
            raise UsageError(
                f"unet predict got --config {config_path} and the arguments "
                f"{' '.join(arguments)}; give either --config FILE (inputs in loaders.test) "
                "or CHECKPOINT INPUT... without a config."
            )
        return load_config(config_path, overrides)
    if len(arguments) < 2:
        raise UsageError(
            "unet predict needs a checkpoint and at least one input: unet predict "
            "CHECKPOINT INPUT... -o OUT (or --config FILE for a config with loaders.test)."
        )
    from unet_core.cli.predict_checkpoint import prediction_config, stored_config

    checkpoint, inputs = arguments[0], arguments[1:]
    from unet_core.config.loading import validate_source
    from unet_core.config.yaml_source import YamlSource

    data = prediction_config(checkpoint, inputs, stored_config(checkpoint))
    return validate_source(YamlSource(data, {}, f"the config stored in {checkpoint}"), overrides)


def _run(
    cfg: ExperimentConfig, output: str | None, *, device: str | None, overwrite: bool, preview: bool
) -> list[Written]:
    """Predict, with -o read as one output file or a folder (predict_checkpoint.py)."""
    from unet_core.cli.predict_checkpoint import discard_scratch, finish, output_target, with_target
    from unet_core.engine.data import input_files
    from unet_core.prediction.run import run_prediction

    target = output_target(output, len(input_files(cfg, "test")) if output else 0, overwrite)
    from unet_core.cli.verbosity import command_progress

    try:
        cfg = with_target(cfg, target)
        with command_progress("predict"):
            written = run_prediction(
                cfg,
                device=device,
                overwrite=overwrite,
                preview=preview,
                final_name=target.final_name if target.single_file else None,
            )
        return finish(target, written)
    finally:
        discard_scratch(target)


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
