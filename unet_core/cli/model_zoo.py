"""``unet models pull NAME`` and ``unet models list --remote``: pretrained packages by name."""

from __future__ import annotations

from pathlib import Path

import click

_CATALOG = click.option(
    "--catalog",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML model catalogue (version: 1, models: {NAME: {url, sha256}}) instead of the "
    "built-in one.",
)
_CACHE = click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    help="Cache folder (default: the per-user cache, e.g. ~/.cache/unet-core); models go to "
    "its models/ subfolder.",
)


@click.command("pull")
@click.argument("name")
@_CATALOG
@_CACHE
@click.option("--trust-unverified", is_flag=True, help="Accept an entry without sha256.")
def pull(name: str, catalog: Path | None, cache: Path | None, trust_unverified: bool) -> None:
    """Download the pretrained model NAME (a bioimage.io package) into the cache, verified.

    A package already in the cache and verified is used without network. Use it with
    `unet predict --model PATH` or as trainer.pre_trained.
    """
    from unet_core.exchange.model_catalog import pull_model

    path, downloaded = pull_model(name, catalog, cache, trust_unverified=trust_unverified)
    click.echo(f"{name}: {'downloaded' if downloaded else 'already in the cache'}: {path}")


@click.command("list")
@click.option("--remote", is_flag=True, help="List the catalogue of pretrained models.")
@_CATALOG
@_CACHE
def list_models(remote: bool, catalog: Path | None, cache: Path | None) -> None:
    """List pretrained models: the catalogue (--remote) or what is in the cache."""
    from unet_core.exchange.model_catalog import load_model_catalog, model_cache

    entries = load_model_catalog(catalog)
    folder = model_cache(cache)
    for entry in entries.values():
        cached = (folder / entry.name / entry.file).is_file()
        if not remote and not cached:
            continue
        check = "sha256 checked" if entry.sha256 else "sha256 UNKNOWN (--trust-unverified)"
        click.echo(f"{entry.name}  {entry.description}{'  [cached]' if cached else ''}")
        click.echo(f"    {entry.url}  [{check}]")
        if entry.licence or entry.page:
            click.echo(f"    licence: {entry.licence or '-'}  {entry.page}".rstrip())
    if not remote:  # pulled from another catalogue (--catalog): in the cache all the same
        others = sorted(
            p for p in folder.glob("*/*") if p.is_file() and p.parent.name not in entries
        )
        for path in others:
            click.echo(f"{path.parent.name}  [cached]  {path}")
        if others:
            return
    if not entries:
        click.echo("The catalogue lists no models; give one with --catalog FILE.")
