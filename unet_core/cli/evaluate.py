"""``unet evaluate``: score prediction files against ground truth with registered metrics.

Either ``--config FILE`` (the test files' predictions as ``unet predict`` named them, the
ground truth at ``loaders.label_internal_path``, the metric ``eval_metric`` and the target
layout of ``loaders.val.transformer.label``), or explicit files: ``--prediction F
--ground-truth F --metric NAME``. ``--metric`` takes a name or a YAML mapping such as
``'{name: BlobsAveragePrecision, thresholds: [0.5]}'`` and may be repeated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from unet_core.cli.options import config_option, set_option
from unet_core.errors import UsageError


def _metric_spec(text: str) -> Any:
    from unet_core.config.yaml_source import parse_yaml
    from unet_core.errors import ConfigError

    stripped = text.strip()
    if not stripped.startswith("{"):
        return stripped
    spec = parse_yaml(stripped, f"--metric {text!r}")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(f"--metric {text!r} needs a `name`, e.g. '{{name: MeanIoU}}'.")
    return spec


@click.command("evaluate")
@config_option("YAML config whose loaders.test predictions to score.", required=False)
@set_option("loaders.output_dir=predictions")
@click.option("--prediction", type=click.Path(), help="Prediction file (HDF5, TIFF, OME-Zarr...).")
@click.option("--ground-truth", type=click.Path(), help="Ground-truth file or zarr folder.")
@click.option("--dataset", help="Dataset scored in the prediction file (default predictions).")
@click.option("--gt-dataset", default="label", show_default=True, help="Ground-truth dataset.")
@click.option(
    "--gt-transform",
    help="YAML list of label transforms for the target, e.g. '[{name: BlobsToMask}]'.",
)
@click.option("--metric", "metrics", multiple=True, help="Metric name or YAML mapping.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="JSON report path.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="CSV report path.")
def evaluate(
    config_path: str | None,
    overrides: tuple[str, ...],
    prediction: str | None,
    ground_truth: str | None,
    dataset: str | None,
    gt_dataset: str,
    gt_transform: str | None,
    metrics: tuple[str, ...],
    json_path: str | None,
    csv_path: str | None,
) -> None:
    """Score predictions (probabilities or segmentations) and print a table."""
    from unet_core.prediction import score_files as evaluation

    specs = [_metric_spec(m) for m in metrics]
    if config_path is not None:
        from unet_core.cli.verbosity import command_progress
        from unet_core.config import load_config

        cfg = load_config(config_path, overrides)
        with command_progress("evaluate"):
            scores = evaluation.evaluate_config(cfg, specs, dataset)
        out_dir = Path(scores[0].prediction).parent if scores else Path(".")
        default = out_dir / "evaluation"
    elif prediction is not None and ground_truth is not None:
        if not specs:
            raise UsageError("unet evaluate --prediction ... needs at least one --metric NAME.")
        scores = evaluation.score_file(
            prediction,
            dataset or "predictions",
            ground_truth,
            gt_dataset,
            specs,
            label_pipeline=_pipeline(gt_transform),
        )
        default = Path(prediction).with_name(f"{Path(prediction).stem}_evaluation")
    else:
        raise UsageError(
            "unet evaluate needs --config FILE, or --prediction FILE --ground-truth FILE "
            "--metric NAME."
        )
    json_out = Path(json_path) if json_path else default.with_suffix(".json")
    csv_out = Path(csv_path) if csv_path else default.with_suffix(".csv")
    from unet_core.prediction.score_reports import check_targets

    check_targets(
        [(json_out, json_path is not None, "--json"), (csv_out, csv_path is not None, "--csv")],
        [p for s in scores for p in (s.prediction, s.ground_truth)],
        list(evaluation.Score.__dataclass_fields__),
    )
    evaluation.write_reports(scores, json_out, csv_out)
    _table(scores, json_out, csv_out)


def _pipeline(text: str | None) -> list[Any] | None:
    if not text:
        return None
    from unet_core.config.yaml_source import parse_yaml
    from unet_core.errors import ConfigError

    specs = parse_yaml(text, f"--gt-transform {text!r}")
    if not isinstance(specs, list):
        raise ConfigError("--gt-transform must be a YAML list, e.g. '[{name: BlobsToMask}]'.")
    return specs


def _table(scores: list[Any], json_out: Path, csv_out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="evaluation")
    for column in ("prediction", "dataset", "metric", "value", "better"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for s in scores:
        better = {True: "higher", False: "lower", None: "?"}[s.higher_is_better]
        table.add_row(Path(s.prediction).name, s.dataset, s.metric, f"{s.value:.4f}", better)
    console = Console()
    console.print(table)
    console.print(f"written: {json_out} and {csv_out}")
