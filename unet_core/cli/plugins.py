"""``unet plugins list|show``: what is installed, from which distribution, and its schema.

``list`` reads entry-point metadata only (no plugin import, no torch); ``--check`` imports
each component, implementation included (a Deferred entry is resolved), to also catch import
errors and bad schemas.
"""

from __future__ import annotations

import click

from unet_core.kinds import KINDS


@click.group()
def plugins() -> None:
    """List and inspect installed components (models, losses, metrics, ...)."""


@plugins.command("list")
@click.argument("pattern", default="*")
@click.option("--kind", "-k", type=click.Choice(list(KINDS)), help="Only this kind.")
@click.option("--check", is_flag=True, help="Import each component to verify it loads.")
def list_plugins(pattern: str, kind: str | None, check: bool) -> None:
    """List components whose name matches PATTERN (shell wildcards, case-insensitive)."""
    import fnmatch

    from unet_core import registry
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
    rows = [("NAME", "KIND", "DISTRIBUTION", "VERSION", "STATUS")]
    rows += [
        (r.name, r.kind, r.distribution, r.version, "ok" if r.error is None else "broken")
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    color = {"ok": "green", "broken": "red"}
    for row, shown in zip(rows, [None, *records]):
        cells = "  ".join(cell.ljust(w) for cell, w in zip(row, widths))
        status = row[4] if shown is None else click.style(row[4], fg=color[row[4]])
        reason = f": {shown.error}" if shown is not None and shown.error else ""
        click.echo(f"{cells}  {status}{reason}")
    broken = sum(r.error is not None for r in records)
    click.echo(f"{len(records)} components, {broken} broken.")


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
        doc = (obj.__doc__ or "").strip()
        if doc:
            console.print(escape(doc))
        table = Table()
        for column in ("parameter", "type", "default", "description"):
            table.add_column(column)
        for field, info in obj.Config.model_fields.items():
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
