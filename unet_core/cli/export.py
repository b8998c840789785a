"""``unet export``: a checkpoint as TorchScript, ONNX or a bioimage.io model package.

Every format is checked before it is written (exported output == the network's, within 1e-4,
on a test input cut from ``--sample`` or the config's test/val volume) and written atomically;
an existing OUT is only replaced with ``--overwrite``.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from unet_core.errors import UsageError


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["torchscript", "onnx", "bioimageio"]),
    required=True,
    help="torchscript (.pt), onnx (.onnx) or bioimageio (a model package .zip).",
)
@click.option("-o", "--output", "output", required=True, type=click.Path(), help="File to write.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    help="Training config; needed only when the checkpoint holds none (pytorch-3dunet).",
)
@click.option(
    "--sample",
    type=click.Path(dir_okay=False),
    help="HDF5 volume for the test input (default: the config's first test/val file).",
)
@click.option(
    "--torchscript-mode",
    type=click.Choice(["trace", "script"]),
    default="trace",
    show_default=True,
    help="How the network becomes TorchScript.",
)
@click.option(
    "--metadata",
    type=click.Path(dir_okay=False),
    help="bioimageio: YAML with name, description, authors, license, cite, documentation.",
)
@click.option(
    "--onnx/--no-onnx",
    "onnx",
    default=None,
    help="bioimageio: add ONNX weights (default: when onnx and onnxruntime are installed).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export(
    checkpoint: str,
    fmt: str,
    output: str,
    config_path: str | None,
    sample: str | None,
    torchscript_mode: str,
    metadata: str | None,
    onnx: bool | None,
    overwrite: bool,
) -> None:
    """Export CHECKPOINT (with the config stored in it) to another format."""
    from unet_core.exchange.exporting import export_checkpoint

    out = Path(output)
    inputs = {
        "the checkpoint being exported": checkpoint,
        "--sample": sample,
        "--config": config_path,
    }
    _check_output(output, {k: Path(v) for k, v in inputs.items() if v}, overwrite)
    report = export_checkpoint(
        checkpoint,
        fmt,
        out,
        config_path=config_path,
        sample=sample,
        torchscript_mode=torchscript_mode,
        metadata=metadata,
        onnx=onnx,
    )
    click.echo(report)


def _check_output(output: str, inputs: dict[str, Path], overwrite: bool) -> None:
    """Refuse an output that is one of the inputs (even with --overwrite), a folder, or an
    existing file without --overwrite."""
    out = Path(output)
    for what, path in inputs.items():
        if out.exists() and path.exists() and out.resolve() == path.resolve():
            raise UsageError(
                f"-o {output!r} is {what}; unet-core never writes over an input, even with "
                "--overwrite. Choose another output file."
            )
    if out.is_dir() or output.endswith(("/", os.sep)):
        raise UsageError(f"-o {output!r} is a folder; give a file name, e.g. model.zip.")
    if out.exists() and not overwrite:
        raise UsageError(
            f"{output!r} already exists; choose another -o, or pass --overwrite to replace it."
        )
