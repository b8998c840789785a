"""The ``unet`` command. Subcommands live in one module each and are added here by name.

Importing this module must stay cheap: no torch, no plugin module. Each subcommand module
imports heavy things inside its command function.
"""

from __future__ import annotations

import importlib

import click

from unet_core import __version__
from unet_core.cli.errors import run_cli

#: (module, attribute) of each subcommand; a module that is missing is skipped.
SUBCOMMANDS = [
    ("unet_core.cli.plugins", "plugins"),
    ("unet_core.cli.config", "config"),
    ("unet_core.cli.models", "models"),
    ("unet_core.cli.data", "data"),
    ("unet_core.cli.train", "train"),
    ("unet_core.cli.predict", "predict"),
    ("unet_core.cli.evaluate", "evaluate"),
    ("unet_core.cli.export", "export"),
    ("unet_core.cli.demo", "demo"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="unet-core")
@click.option("--debug", is_flag=True, help="Show full tracebacks for user errors too.")
@click.option("-v", "--verbose", count=True, help="Debug lines too (-vv: every library's as well).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: int, quiet: bool) -> None:
    """unet-core: train and apply 3D/2D U-Nets to microscopy volumes.

    Shell completion (bash; zsh and fish alike): eval "$(_UNET_COMPLETE=bash_source unet)".
    """
    from unet_core.cli import verbosity
    from unet_core.engine.allocator import keep_freed_memory

    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, quiet=quiet)
    if ctx.resilient_parsing:  # completion: nothing is run
        return
    handler = verbosity.configure(verbose, quiet)
    keep_freed_memory()  # before any tensor exists: forwards reuse their buffers
    ctx.call_on_close(lambda: verbosity.remove(handler))


for _module, _attr in SUBCOMMANDS:
    try:
        cli.add_command(getattr(importlib.import_module(_module), _attr))
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    run_cli(cli, argv)


if __name__ == "__main__":
    main()
