"""``unet data check``: every data check of a config, on every file, without training.

Per file it reports shapes, dtypes, value ranges (of the finite values: NaN/inf voxels are
counted and located, a problem unless ``loaders.nonfinite: fill``), patch counts, the fraction
of patches the filter keeps and the label classes; it also tries one sample through the
transforms and the loss (label dtype/layout vs the loss), checks the patch shape against the
model and the train/val overlap. All problems are listed; the exit status is non-zero if there
is any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unet_core.config import ExperimentConfig, PhaseConfig

import click

from unet_core.cli.options import config_option, output_option, set_option

PHASES = ("train", "val", "test")


@dataclass
class FileReport:
    phase: str
    path: str
    raw: str = "-"
    label: str = "-"
    patches: str = "-"
    classes: str = "-"
    problems: list[str] = field(default_factory=list)


@dataclass
class Report:
    files: list[FileReport] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # config-level, not tied to one file

    def all_problems(self) -> list[str]:
        out = list(self.problems)
        for f in self.files:
            out += [f"{f.phase} {f.path}: {p}" for p in f.problems]
        return out


@click.group()
def data() -> None:
    """Inspect and check the data a config reads."""


@data.command("check")
@config_option("Experiment YAML whose loaders to check.")
@set_option("loaders.num_workers=0")
@click.option("--phase", "phases", multiple=True, type=click.Choice(PHASES), help="Only these.")
def check(config_path: str, overrides: tuple[str, ...], phases: tuple[str, ...]) -> None:
    """Run all data checks of --config on every file of every phase."""
    from unet_core.config import load_config
    from unet_core.errors import DataError

    cfg = load_config(config_path, overrides)
    report = run_checks(cfg, phases or PHASES)
    print_report(report)
    problems = report.all_problems()
    if problems:
        more = (
            f" ({len(problems)} problems in total, all listed above)" if len(problems) > 1 else ""
        )
        raise DataError(problems[0] + more)
    click.echo(f"{len(report.files)} input(s) checked: no problems found.")


# -- checks ------------------------------------------------------------------------------------
def run_checks(cfg: ExperimentConfig, phases: tuple[str, ...] | list[str] = PHASES) -> Report:
    """All checks of ``cfg`` (an ExperimentConfig) as a :class:`Report`."""
    from unet_core.engine import data as engine
    from unet_core.errors import ConfigError, UserError

    report = Report()
    if cfg.loaders is None:
        raise ConfigError("The config has no `loaders` section; there is no data to check.")
    try:
        engine.check_train_val_disjoint(cfg)
    except ConfigError as exc:
        report.problems.append(str(exc))
    except UserError:
        pass  # a missing path: reported with its phase below
    model = _model(cfg, report)
    for phase in phases:
        section = getattr(cfg.loaders, phase)
        if section is None:
            continue
        _check_patch_shape(cfg, phase, section, model, report)
        for entry in section.file_paths:  # one entry at a time: a bad one hides no other
            try:
                files = engine.input_files(with_files(cfg, phase, [entry]), phase)
            except UserError as exc:
                report.files.append(FileReport(phase, entry, problems=[str(exc)]))
                continue
            for path in files:
                report.files.append(check_file(cfg, phase, path, model))
    return report


def with_files(cfg: ExperimentConfig, phase: str, files: list[str]) -> ExperimentConfig:
    """A copy of ``cfg`` whose ``loaders.<phase>.file_paths`` is ``files``."""
    assert cfg.loaders is not None
    section = getattr(cfg.loaders, phase).model_copy(update={"file_paths": files})
    return with_loaders(cfg, **{phase: section})  # type: ignore[no-any-return]


def with_loaders(cfg: Any, **update: Any) -> Any:
    """A copy of ``cfg`` with these ``loaders`` keys replaced."""
    return cfg.model_copy(update={"loaders": cfg.loaders.model_copy(update=update)})


def _model(cfg: ExperimentConfig, report: Report) -> tuple[Any, Any] | None:
    from unet_core import registry
    from unet_core.errors import UserError

    try:
        return registry.get("models", cfg.model.name), cfg.model.config
    except UserError as exc:
        report.problems.append(f"model: {exc}")
        return None


def _check_patch_shape(
    cfg: ExperimentConfig, phase: str, section: PhaseConfig, model: Any, report: Report
) -> None:
    patch = section.patch_shape
    if model is None or patch is None:
        return
    check_patch = getattr(model[0], "check_patch_shape", None)
    if callable(check_patch):
        message = check_patch(model[1], patch)
        if message:
            report.problems.append(f"loaders.{phase}.slice_builder.patch_shape: {message}")


def check_file(cfg: ExperimentConfig, phase: str, path: str, model: Any) -> FileReport:
    """Inspect one file and build its dataset; problems are collected, not raised."""
    from unet_core.engine import data as engine
    from unet_core.errors import UserError

    row = FileReport(phase, path)
    try:
        _describe_volumes(cfg, phase, path, row)
    except UserError as exc:
        row.problems.append(str(exc))
        return row
    try:  # non-finite voxels are reported above: the sample check runs with them filled
        filled = with_loaders(cfg, nonfinite="fill")
        (dataset,) = engine.build_datasets(with_files(filled, phase, [path]), phase)
        _describe_patches(dataset, row)
        _check_sample(cfg, dataset, phase, model, row)
    except UserError as exc:
        row.problems.append(str(exc))
    return row


def _describe_volumes(cfg: ExperimentConfig, phase: str, path: str, row: FileReport) -> None:
    """Shapes, dtypes, value range and label classes, read block by block."""
    from unet_core.engine import data as engine
    from unet_core.io import Source

    _, dataset_config = engine.dataset_component(cfg)
    raw_name = getattr(dataset_config, "raw_internal_path", None)
    if raw_name is None:  # folder datasets (DSB): described by their dataset
        return
    label_name = getattr(dataset_config, "label_internal_path", None) if phase != "test" else None
    raw_word = raw_name if isinstance(raw_name, str) else raw_name[0]
    fill = cfg.loaders is not None and cfg.loaders.nonfinite == "fill"
    with Source(path, raw_name=raw_word, key=f"loaders.{phase}.file_paths") as src:
        raw = src.volume(raw_name, key="loaders.raw_internal_path")
        row.raw = f"{raw.shape} {raw.dtype} {_finite_range(raw, row, fill)}"
        if label_name is not None:
            label = src.volume(label_name, key="loaders.label_internal_path")
            row.label = f"{label.shape} {label.dtype}"
            _finite_range(label, row, fill)
            row.classes = _classes(_unique(label))


def _describe_patches(dataset: Any, row: FileReport) -> None:
    row.patches = str(len(dataset))
    total = getattr(getattr(dataset, "slice_builder", None), "total_patches", None)
    if total:
        row.patches = f"{len(dataset)}/{total} ({100 * len(dataset) / total:.0f}% kept)"
    if getattr(dataset, "names", None) is None:  # folder datasets (DSB)
        row.raw = f"{len(dataset)} images"


def _finite_range(volume: Any, row: FileReport, fill: bool) -> str:
    """``[min, max]`` of the finite values; non-finite voxels are a problem unless filled."""
    from unet_core.io.finite import FILL_KEY, nonfinite_error, scan_volume

    count, lo, hi = scan_volume(volume)
    text = "[no finite values]" if lo != lo else f"[{lo:g}, {hi:g}]"
    if not count.total:
        return text
    if fill:
        return f"{text}, {count.total} non-finite (filled: {FILL_KEY})"
    row.problems.append(str(nonfinite_error(count, volume.what)))
    return f"{text}, {count.total} non-finite"


def _unique(volume: Any) -> Any:
    import numpy as np

    values = np.array([], dtype=volume.dtype)
    for block in volume.blocks():
        values = np.union1d(values, np.unique(block))
    return values


def _classes(values: Any) -> str:
    if len(values) <= 8:
        return ", ".join(f"{v:g}" for v in values.tolist())
    return f"{len(values)} values in [{values[0]:g}, {values[-1]:g}]"


def _check_sample(
    cfg: ExperimentConfig, dataset: Any, phase: str, model: Any, row: FileReport
) -> None:
    """One sample through the transforms; its channels vs the model, its label vs the loss."""
    if len(dataset) == 0:
        row.problems.append("no samples")
        return
    sample = dataset[0]
    raw = sample[0]
    if model is not None:
        wanted = getattr(model[1], "in_channels", None)
        channels = raw.shape[0] if raw.dim() == 4 else 1
        if wanted is not None and channels != wanted:
            row.problems.append(
                f"the transformed input has {channels} channel(s) (shape {tuple(raw.shape)}) but "
                f"model.in_channels is {wanted}; set in_channels: {channels} or change the data."
            )
    if phase != "test" and cfg.loss is not None and model is not None and len(sample) >= 2:
        problem = _loss_problem(cfg, model, sample)
        if problem:
            row.problems.append(problem)


def _loss_problem(cfg: ExperimentConfig, model: Any, sample: tuple[Any, ...]) -> str | None:
    """The configured loss applied to zero logits and this label: its complaint, if any."""
    import torch

    from unet_core import registry
    from unet_core.errors import UserError

    assert cfg.loss is not None
    target = sample[1][None]
    weight = sample[2][None] if len(sample) > 2 else None
    out_channels = getattr(model[1], "out_channels", 1)
    dims = getattr(model[0], "spatial_dims", None) or getattr(model[1], "spatial_dims", 3)
    spatial = tuple(sample[0].shape[-3:])
    logits = torch.zeros((1, out_channels, *spatial))
    if dims == 2:
        logits = logits.squeeze(-3)
        target = target.squeeze(-3) if target.shape[-3] == 1 else target
        weight = weight.squeeze(-3) if weight is not None and weight.shape[-3] == 1 else weight
    try:
        loss = registry.create("losses", cfg.loss)
        loss(logits, target, weight) if weight is not None else loss(logits, target)
    except UserError as exc:
        return f"the label does not fit loss {cfg.loss.name}: {exc}"
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        return (
            f"loss {cfg.loss.name} fails on a label of shape {tuple(sample[1].shape)} "
            f"{sample[1].dtype} with logits {tuple(logits.shape)}: {exc}. Check the label "
            f"transforms (ToTensor dtype, expand_dims) and model.out_channels."
        )
    return None


# -- output ------------------------------------------------------------------------------------
def print_report(report: Report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title="unet data check", show_lines=False)
    columns = ("phase", "file", "raw: shape dtype [min, max]", "label", "classes", "patches")
    for column in (*columns, "status"):
        table.add_column(escape(column), overflow="fold")
    for f in report.files:
        status = "ok" if not f.problems else f"{len(f.problems)} problem(s)"
        cells = (f.phase, f.path, f.raw, f.label, f.classes, f.patches, status)
        table.add_row(*(Text(c) for c in cells))
    console = Console(highlight=False)
    if not console.is_terminal:  # logs and pipes: one line per file, not an 80-column wrap
        console = Console(highlight=False, width=max(console.width, 220))
    console.print(table)
    problems = report.all_problems()
    for i, problem in enumerate(problems, 1):
        console.print(f"[bold red]Problem {i}:[/] {escape(problem)}", markup=True, soft_wrap=True)


@data.command("convert")
@click.argument("source", metavar="IN")
@click.argument("target", metavar="[OUT]", required=False)
@output_option("The output (the same as OUT, as in every other command), e.g. vol.ome.zarr.")
@click.option(
    "--dataset",
    "names",
    multiple=True,
    default=("raw",),
    show_default=True,
    help="Array to copy (repeatable); integer arrays after the first become OME-Zarr labels.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@click.option(
    "--levels",
    type=click.IntRange(0, 10),
    default=0,
    show_default=True,
    help="Coarser levels of a multiscale pyramid (OME-Zarr), each half the previous one.",
)
def convert(
    source: str,
    target: str | None,
    output: str | None,
    names: tuple[str, ...],
    overwrite: bool,
    levels: int,
) -> None:
    """Copy volumes between formats, e.g. HDF5/TIFF -> OME-Zarr (IN.h5 OUT.ome.zarr, or
    IN.h5 -o OUT.ome.zarr)."""
    from unet_core.cli.verbosity import command_progress
    from unet_core.conversion import convert as run
    from unet_core.errors import UsageError

    if target is not None and output is not None and target != output:
        raise UsageError(f"unet data convert got two outputs, {target} and -o {output}; give one.")
    target = target or output
    if target is None:
        raise UsageError("unet data convert needs the output: unet data convert IN -o OUT.")

    with command_progress("convert"):
        copied = run(source, target, names, overwrite=overwrite, levels=levels)
    click.echo(f"{target}: {', '.join(copied)} copied from {source}")


def _add_fetch() -> None:
    """``unet data fetch`` lives in its own module; the group is defined here."""
    from unet_core.cli.fetch import fetch

    data.add_command(fetch)


_add_fetch()
