"""``unet data fetch``: download a public dataset of the reference's scenarios by name."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("fetch")
@click.argument("name", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also copy the file into this folder (created if missing).",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache folder (default: the per-user cache, e.g. ~/.cache/unet-core).",
)
@click.option("--list", "show_list", is_flag=True, help="List the datasets that can be fetched.")
@click.option(
    "--catalog",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML catalogue to use instead of the built-in one (e.g. a local mirror).",
)
@click.option(
    "--trust-unverified",
    is_flag=True,
    help="Download an entry whose sha256 is unknown (prints the sha256 of what arrived).",
)
def fetch(
    name: str | None,
    output: Path | None,
    cache: Path | None,
    show_list: bool,
    catalog: Path | None,
    trust_unverified: bool,
) -> None:
    """Download the public dataset NAME into the cache, checked against its sha256.

    The small sample volumes are already in the repository (examples/data); this is for the
    full-size datasets the reference's scenarios were made for. A second fetch of a verified
    file uses the cache and needs no network.
    """
    from unet_core.errors import UsageError
    from unet_core.fetch.catalog import load_catalog, lookup

    entries = load_catalog(catalog)
    if show_list:
        for entry in entries.values():
            check = "sha256 checked" if entry.sha256 else "sha256 UNKNOWN (--trust-unverified)"
            click.echo(f"{entry.name}  {entry.description}")
            click.echo(f"    {entry.url}  [{check}]")
            if entry.licence or entry.page:
                click.echo(f"    licence: {entry.licence or '-'}  {entry.page}".rstrip())
        return
    if name is None:
        raise UsageError(
            "Give the NAME of a dataset to fetch (known: "
            f"{', '.join(sorted(entries))}); `unet data fetch --list` describes each."
        )
    from unet_core.fetch.download import fetch as download

    entry = lookup(entries, name)
    result = download(entry, cache, output, trust_unverified=trust_unverified)
    how = "downloaded" if result.downloaded else "already in the cache"
    click.echo(f"{entry.name}: {how}: {result.cached}")
    if entry.sha256 is None:
        click.echo(f"  sha256 of what arrived (unverified): {result.sha256}")
    if result.output is not None:
        state = "copied to" if result.output_written else "identical copy already at"
        click.echo(f"  {state} {result.output}")
