"""``unet plugins list|show``: what is installed, from which distribution, and its schema.

``list`` reads entry-point metadata and the components' docstrings from their source files
(no plugin import, no torch); ``--check`` imports each component, implementation included (a
Deferred entry is resolved), to also catch import errors and bad schemas.
"""

from __future__ import annotations

import inspect

import click

from unet_core.kinds import KINDS


@click.group()
def plugins() -> None:
    """List and inspect installed components (models, losses, metrics, ...)."""


@plugins.command("list")
@click.argument("pattern", default="*")
@click.option("--kind", "-k", type=click.Choice(list(KINDS)), help="Only this kind.")
@click.option(
    "--check",
    is_flag=True,
    help="Import each component to verify it loads, and flag entry-point groups unet-core does "
    "not read; exits 1 if anything is broken (for CI).",
)
@click.option(
    "--long", "-l", "long_", is_flag=True, help="Distribution, version and status columns."
)
def list_plugins(pattern: str, kind: str | None, check: bool, long_: bool) -> None:
    """List components whose name matches PATTERN (shell wildcards, case-insensitive)."""
    import fnmatch

    from unet_core import registry
    from unet_core.descriptions import describe
    from unet_core.errors import PluginError

    records = [
        r for r in registry.records(kind) if fnmatch.fnmatch(r.name.lower(), pattern.lower())
    ]
    if check:
        for rec in records:
            try:  # resolves Deferred entries too, so a broken implementation module shows
                registry.default_registry.get(rec.kind, rec.name)
            except PluginError:
                pass  # get() stored the one-line reason in rec.error
    header: tuple[str, ...]
    rows: list[tuple[str, ...]]
    if long_:
        header = ("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS")
        rows = [(r.name, r.kind, r.distribution, r.version, "ok") for r in records]
    else:
        header = ("NAME", "KIND", "DESCRIPTION")
        rows = [(r.name, r.kind, describe(r.target) if r.error is None else "") for r in records]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    click.echo(_line(header, widths).rstrip())
    for row, rec in zip(rows, records):
        if rec.error is None:
            last = click.style(row[-1], fg="green") if long_ else row[-1]
        else:
            last = click.style("broken", fg="red") + f": {rec.error}"
        click.echo(_line((*row[:-1], last), widths).rstrip())
    broken = sum(r.error is not None for r in records)
    click.echo(f"{len(records)} components, {broken} broken.")
    if check:
        from unet_core.discovery import unknown_groups

        strays = unknown_groups()
        for line in strays:
            click.echo(click.style("warning", fg="yellow") + f": {line}", err=True)
        if broken or strays:
            raise SystemExit(1)


def _line(cells: tuple[str, ...], widths: list[int]) -> str:
    """Cells padded to ``widths``; the last cell, free-length, unpadded."""
    return "  ".join([*(c.ljust(w) for c, w in zip(cells, widths)), cells[-1]])


@plugins.command("show")
@click.argument("name")
@click.option("--kind", "-k", type=click.Choice(list(KINDS)), help="Disambiguate the name.")
def show(name: str, kind: str | None) -> None:
    """Show a component's parameters: type, default and documentation."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from unet_core import registry
    from unet_core.errors import PluginError

    kinds = [kind] if kind else [k for k in KINDS if name in registry.list(k)]
    if not kinds:
        all_names = sorted({n for k in KINDS for n in registry.list(k)})
        raise PluginError(f"No component named {name!r}{registry.suggest(name, all_names)}.")
    console = Console()
    for k in kinds:
        rec = registry.default_registry.record(k, name)
        obj = registry.get(k, name)
        console.print(f"[bold]{name}[/] ({k}) from {rec.distribution} {rec.version}")
        doc = inspect.cleandoc(obj.__doc__ or "")
        if doc:
            console.print(escape(doc))
        table = Table()
        for column in ("parameter", "type", "default", "description"):
            table.add_column(column)
        # the registered Config: a Deferred's, which its implementation need not repeat
        for field, info in registry.config_model(k, name).model_fields.items():
            default = (
                "(required)"
                if info.is_required()
                else repr(info.get_default(call_default_factory=True))
            )
            row = (field, _type_name(info.annotation), default, info.description or "")
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)


def _type_name(annotation: object) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    return text.replace("typing.", "")
