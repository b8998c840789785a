"""``unet config validate|schema``."""

from __future__ import annotations

import click


@click.group()
def config() -> None:
    """Validate experiment configs and export their JSON schema."""


@config.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
def validate(file: str, overrides: tuple[str, ...]) -> None:
    """Check FILE against every component's schema without running anything."""
    from unet_core.config import load_config

    cfg = load_config(file, overrides)
    sections = [k for k in ("model", "loss", "eval_metric", "optimizer", "trainer", "loaders")]
    present = ", ".join(k for k in sections if getattr(cfg, k) is not None)
    click.echo(f"{file}: valid ({present}).")


@config.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file.")
def schema(output: str | None) -> None:
    """Print the JSON schema of an experiment, including installed components."""
    import json

    from unet_core.config.export import experiment_json_schema
    from unet_core.io.atomic import write_text_atomic

    text = json.dumps(experiment_json_schema(), indent=2)
    if output:
        write_text_atomic(output, text + "\n")
        click.echo(f"Schema written to {output}.")
    else:
        click.echo(text)
