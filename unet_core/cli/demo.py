"""``unet demo``: the one-command tour (train, predict, segment, score, draw)."""

from __future__ import annotations

import click

from unet_core.cli.options import device_option
from unet_core.demo import DEFAULT_ITERATIONS


@click.command()
@click.option("-o", "--output", default="unet-demo", show_default=True, help="Output folder.")
@device_option()
@click.option("--data", type=click.Path(dir_okay=False), help="Your labelled HDF5/TIFF volume.")
@click.option("--labels", type=click.Path(dir_okay=False), help="Label TIFF matching --data.")
@click.option(
    "--iterations", default=DEFAULT_ITERATIONS, show_default=True, help="Training iterations."
)
def demo(
    output: str, device: str | None, data: str | None, labels: str | None, iterations: int
) -> None:
    """Generate a labelled 3D volume, train a small U-Net (under a minute on 2 CPU cores), predict a
    held-back volume, segment nuclei, and write checkpoint, logs, prediction, metrics and a PNG.
    Running it again into the same folder replaces the previous results."""
    from unet_core.cli.verbosity import command_progress
    from unet_core.demo.run import run_demo

    with command_progress("demo"):
        result = run_demo(output, data, labels, iterations, echo=click.echo, device=device)
    click.echo(
        f"\nDone in {result.seconds:.0f} s. Scores: "
        + ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items())
    )
    for what, path in result.files.items():
        click.echo(f"  {what:17s} {path}")
