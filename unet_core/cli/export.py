"""``unet export``: a checkpoint as TorchScript, ONNX or a bioimage.io model package.

Every format is checked before it is written (exported output == the network's, within 1e-4,
on a test input cut from ``--sample`` or the config's test/val volume) and written atomically;
an existing OUT is only replaced with ``--overwrite``.
"""

from __future__ import annotations

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
    _check_output(out, Path(checkpoint), overwrite)
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


def _check_output(out: Path, checkpoint: Path, overwrite: bool) -> None:
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise UsageError(
            f"-o {str(out)!r} is the checkpoint being exported; choose another output file."
        )
    if out.is_dir():
        raise UsageError(f"-o {str(out)!r} is a folder; give a file name, e.g. model.zip.")
    if out.exists() and not overwrite:
        raise UsageError(
            f"{str(out)!r} already exists; choose another -o, or pass --overwrite to replace it."
        )
