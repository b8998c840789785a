"""``unet config validate|schema``."""

from __future__ import annotations

import click


@click.group()
def config() -> None:
    """Validate experiment configs and export their JSON schema."""


@config.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-c", "--config", "config_file", type=click.Path(dir_okay=False),
    help="The config to check (the same as giving FILE; as in every other command).",
)  # fmt: skip
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a key.")
def validate(file: str | None, config_file: str | None, overrides: tuple[str, ...]) -> None:
    """Check FILE (or -c/--config FILE) against every component's schema without running
    anything."""
    from unet_core.config import load_config
    from unet_core.errors import UsageError

    if file and config_file and file != config_file:
        raise UsageError(
            f"unet config validate got two configs, {file} and -c {config_file}; give one, "
            "either as FILE or as -c/--config FILE."
        )
    file = file or config_file
    if not file:
        raise UsageError(
            "unet config validate needs the config to check: `unet config validate -c FILE` "
            "(or `unet config validate FILE`)."
        )
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
