"""Pretrained models by name: a versioned catalogue of bioimage.io packages (URL + sha256).

Same shape and the same downloader as ``unet data fetch`` (:mod:`unet_core.fetch`): pooch
downloads into a temporary file and keeps it in the cache only once its sha256 matches, so an
interrupted download leaves nothing behind and a cached, verified package needs no network.
Models live in ``<cache>/models/NAME/``, apart from the datasets.

The built-in catalogue is empty in this version: a package's sha256 can only be pinned from a
fixed file, and none could be downloaded and checked where this was written. ``--catalog FILE``
(``version: 1`` and a ``models:`` mapping) names a zoo mirror or a lab's own models.
"""

from __future__ import annotations

from pathlib import Path

from unet_core.errors import DownloadError
from unet_core.fetch.catalog import CatalogEntry, load_catalog, lookup

#: Version of the catalogue format (the ``version:`` key of a catalogue file).
CATALOG_VERSION = 1
BUILTIN_MODELS: tuple[CatalogEntry, ...] = ()


def load_model_catalog(path: str | Path | None = None) -> dict[str, CatalogEntry]:
    """The built-in model catalogue, or the ``models:`` mapping of the YAML at ``path``."""
    if path is not None:
        _check_version(Path(path))
    return load_catalog(path, section="models", builtin=BUILTIN_MODELS)


def _check_version(path: Path) -> None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return  # load_catalog says what is wrong with the file
    version = data.get("version", CATALOG_VERSION) if isinstance(data, dict) else None
    if version != CATALOG_VERSION:
        raise DownloadError(
            f"The model catalogue {path} has version {version!r}; this unet-core reads version "
            f"{CATALOG_VERSION}. Upgrade unet-core or use a catalogue written for it."
        )


def model_cache(cache: Path | None = None) -> Path:
    from unet_core.fetch.download import default_cache

    return (cache if cache is not None else default_cache()) / "models"


def pull_model(
    name: str,
    catalog: str | Path | None = None,
    cache: Path | None = None,
    *,
    trust_unverified: bool = False,
) -> tuple[Path, bool]:
    """The cached package of ``name`` (downloaded if needed) and whether it was downloaded."""
    from unet_core.fetch.download import fetch

    entries = load_model_catalog(catalog)
    entry = lookup(entries, name, what="model", listing="unet models list --remote")
    result = fetch(entry, model_cache(cache), trust_unverified=trust_unverified)
    from unet_core.io.model_package import is_model_package

    if not is_model_package(result.cached):
        raise DownloadError(
            f"What the catalogue lists for {name} ({entry.url}) is not a bioimage.io model "
            f"package (a zip with an rdf.yaml); it is in {result.cached}. Fix the catalogue "
            "entry to point at the package zip."
        )
    return result.cached, result.downloaded
