"""``unet config validate|schema``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from unet_core.cli.options import set_option

if TYPE_CHECKING:
    from unet_core.config import ExperimentConfig
    from unet_core.config.yaml_source import YamlSource


@click.group()
def config() -> None:
    """Validate experiment configs and export their JSON schema."""


@config.command("validate")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option(
    "-c", "--config", "config_file", type=click.Path(dir_okay=False),
    help="The config to check (the same as giving FILE; as in every other command).",
)  # fmt: skip
@set_option("trainer.max_num_iterations=1000")
@click.option(
    "--no-files",
    is_flag=True,
    help="Skip the checks of files and folders (inputs, checkpoints, output folders), for a "
    "config written ahead of its data.",
)
def validate(
    file: str | None, config_file: str | None, overrides: tuple[str, ...], no_files: bool
) -> None:
    """Check that FILE (or -c/--config FILE) will run, without running anything: every
    component's schema and, unless --no-files, that every input path and checkpoint exists,
    that each checkpoint fits the model, and that the output folders can be written."""
    from unet_core.config.loading import validate_source
    from unet_core.config.yaml_source import YamlSource
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
    source = YamlSource.from_file(file)
    cfg = validate_source(source, overrides)
    if not no_files:
        _check_files(cfg, source)
    checked = "schema only, files not checked" if no_files else "files checked"
    click.echo(f"{file}: valid ({_sections(source.data)}; {checked}).")


def _check_files(cfg: ExperimentConfig, source: YamlSource) -> None:
    from unet_core.config.problems import raise_problems
    from unet_core.engine.preflight import file_problems
    from unet_core.errors import ConfigError

    problems = file_problems(cfg)
    try:
        raise_problems(sorted(problems, key=lambda p: source.line(p.path) or 0), source, set())
    except ConfigError as exc:
        raise ConfigError(
            f"{exc}\n(For a config written ahead of its data, `unet config validate --no-files` "
            "checks everything else.)"
        ) from None


def _sections(data: dict[str, Any]) -> str:
    """The top-level sections the file has, loader phases named: 'model, loaders (train)'."""
    out = []
    for key in data:
        loaders = data[key]
        if key == "loaders" and isinstance(loaders, dict):
            phases = [p for p in ("train", "val", "test") if loaders.get(p) is not None]
            out.append(f"loaders ({', '.join(phases)})" if phases else "loaders")
        else:
            out.append(str(key))
    return ", ".join(out) or "empty"


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
