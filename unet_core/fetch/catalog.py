"""What ``unet data fetch`` can download: name, URL, sha256, licence.

The built-in table lists the public datasets the reference's scenarios were made for. A
checksum is only written down where one was published for a fixed file; the OSF folders are
zipped by OSF on request (their bytes are not stable, so no checksum can be pinned) and are
marked unknown: fetching them needs ``--trust-unverified``. A YAML catalogue of the same shape
(``--catalog FILE``) replaces the table, e.g. for a local mirror or for tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_core.errors import ConfigError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = {"url", "sha256", "file", "description", "licence", "page", "hash_source"}


@dataclass(frozen=True)
class CatalogEntry:
    """One downloadable file; ``sha256`` is None where no checksum is known."""

    name: str
    url: str
    file: str
    sha256: str | None
    description: str
    licence: str
    page: str = ""
    hash_source: str = ""


def _plantseg(name: str, osf: str, page: str, what: str) -> CatalogEntry:
    return CatalogEntry(
        name=name,
        url=f"https://files.de-1.osf.io/v1/resources/{osf}/providers/osfstorage/?zip=",
        file=f"{name}.zip",
        sha256=None,
        description=what,
        licence="CC-BY-4.0 (PlantSeg, Wolny et al. 2020, eLife 9:e57613)",
        page=page,
        hash_source="unknown: OSF zips the folder on request, so its bytes are not fixed",
    )


_OVULES = "https://osf.io/w38uf/"
_ROOT = "https://osf.io/2rszy/"
_NUCLEI = "https://osf.io/thxzn/"

BUILTIN: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="dsb2018",
        url="https://github.com/stardist/stardist/releases/download/0.1.0/dsb2018.zip",
        file="dsb2018.zip",
        sha256="e44921950edce378063aa4457e625581ba35b4c2dbd9a07c19d48900129f386f",
        description="2D fluorescence nuclei, DSB 2018 subset as released by StarDist "
        "(2DUnet_dsb2018); TIFF images + masks in train/ and test/",
        licence="Data Science Bowl 2018 / BBBC038 terms (see the page)",
        page="https://bbbc.broadinstitute.org/BBBC038",
        hash_source="as recorded by torch-em (torch_em/data/datasets/light_microscopy/dsb.py); "
        "not re-computed here (the machine that wrote this had no internet)",
    ),
    _plantseg("ovules-train", "x9yns", _OVULES, "confocal Arabidopsis ovules, training split "
              "(3DUnet_confocal_boundary, 2DUnet_confocal_boundary); HDF5 raw + label"),
    _plantseg("ovules-val", "xp5uf", _OVULES, "confocal Arabidopsis ovules, validation split"),
    _plantseg("ovules-test", "8jz7e", _OVULES, "confocal Arabidopsis ovules, test split"),
    _plantseg("root-train", "9x3g2", _ROOT, "light-sheet lateral root primordia, training split "
              "(3DUnet_lightsheet_boundary); HDF5 raw + label"),
    _plantseg("root-val", "vs6gb", _ROOT, "light-sheet lateral root primordia, validation split"),
    _plantseg("root-test", "tn4xj", _ROOT, "light-sheet lateral root primordia, test split"),
    _plantseg("nuclei-train", "thxzn", _NUCLEI, "light-sheet lateral root nuclei "
              "(3DUnet_lightsheet_nuclei); HDF5 raw + label"),
)  # fmt: skip


def load_catalog(
    path: str | Path | None = None,
    *,
    section: str = "datasets",
    builtin: tuple[CatalogEntry, ...] = BUILTIN,
) -> dict[str, CatalogEntry]:
    """The built-in catalogue, or the YAML file at ``path`` (a ``datasets:`` mapping).

    ``section``/``builtin`` let another catalogue of the same shape (pretrained models) reuse it.
    """
    if path is None:
        return {entry.name: entry for entry in builtin}
    import yaml

    where = Path(path)
    try:
        data = yaml.safe_load(where.read_text())
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the catalogue {where}: {exc.strerror or exc}. Give an existing YAML "
            "file to --catalog, or leave it out for the built-in catalogue."
        ) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"The catalogue {where} is not valid YAML: {exc}") from exc
    datasets = data.get(section) if isinstance(data, dict) else None
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(
            f"The catalogue {where} has no `{section}:` mapping: expected `{section}: {{NAME: "
            "{url: ..., sha256: ..., file: ...}}`. Add the mapping or use the built-in catalogue."
        )
    return {str(name): _entry(where, f"{section}.{name}", spec) for name, spec in datasets.items()}


def _entry(where: Path, key: str, spec: Any) -> CatalogEntry:
    name = key.partition(".")[2]
    if not isinstance(spec, dict) or "url" not in spec:
        raise ConfigError(
            f"{key} in the catalogue {where} needs at least `url` (and `sha256`, `file`)."
        )
    unknown = sorted(set(spec) - _KEYS)
    if unknown:
        raise ConfigError(
            f"{key} in the catalogue {where} has unknown key(s) {', '.join(unknown)}: "
            f"expected {', '.join(sorted(_KEYS))}. Remove or rename them."
        )
    sha = spec.get("sha256")
    if sha is not None and not _SHA256.match(str(sha).lower()):
        raise ConfigError(
            f"{key}.sha256 in the catalogue {where} is {sha!r}: expected 64 hex digits, or "
            "null where the checksum is unknown."
        )
    url = str(spec["url"])
    file = str(spec.get("file") or url.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or name)
    if Path(file).name != file:
        raise ConfigError(f"{key}.file in the catalogue {where} must be a bare file name.")
    return CatalogEntry(
        name=name,
        url=url,
        file=file,
        sha256=None if sha is None else str(sha).lower(),
        description=str(spec.get("description", "")),
        licence=str(spec.get("licence", "")),
        page=str(spec.get("page", "")),
        hash_source=str(spec.get("hash_source", "")),
    )


def lookup(
    catalog: dict[str, CatalogEntry], name: str, *, what: str = "dataset", listing: str = ""
) -> CatalogEntry:
    """The entry called ``name``; ConfigError with the known names and the closest one."""
    if name in catalog:
        return catalog[name]
    import difflib

    close = difflib.get_close_matches(name, list(catalog), n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    listing = listing or "unet data fetch --list"
    known = ", ".join(sorted(catalog)) or "none"
    raise ConfigError(
        f"No {what} called {name!r} in the catalogue: known are {known}."
        f"{hint} `{listing}` describes each."
    )
