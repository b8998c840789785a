"""Get one catalogue entry into the cache (pooch, sha256-checked) and copy it where asked.

The cache keeps one folder per dataset name, so a second fetch of a verified file needs no
network. Nothing partial is ever left behind: pooch downloads into a temporary file and only
moves it into the cache once the checksum matches; the copy into ``-o`` is atomic as well,
and never replaces a different file that is already there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_core.errors import DownloadError
from unet_core.fetch.catalog import CatalogEntry


@dataclass(frozen=True)
class Fetched:
    """Where the file is, its sha256, and whether this call downloaded it."""

    cached: Path
    sha256: str
    downloaded: bool
    output: Path | None = None
    output_written: bool = False


def _pooch() -> Any:
    try:
        import pooch
    except ImportError as exc:
        raise DownloadError(
            "`unet data fetch` needs the pooch package, which is not installed. Install it with "
            "`pip install 'unet-core[data]'` (or `pip install pooch`) and run the command again."
        ) from exc
    pooch.get_logger().setLevel("WARNING")  # this module says what happens, once
    return pooch


def default_cache() -> Path:
    """The per-user cache folder (e.g. ~/.cache/unet-core on Linux)."""
    from unet_core.io.user_cache import user_cache_dir

    return user_cache_dir()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(
    entry: CatalogEntry,
    cache: Path | None = None,
    output: Path | None = None,
    *,
    trust_unverified: bool = False,
) -> Fetched:
    """Download ``entry`` into ``cache``/NAME unless verified there; copy it into ``output``."""
    if entry.sha256 is None and not trust_unverified:
        raise DownloadError(
            f"The catalogue has no sha256 for {entry.name} ({entry.hash_source or 'unknown'}), "
            "so what arrives could not be verified. Pass --trust-unverified to download it "
            "anyway (the sha256 of what arrived is printed), or fetch it from "
            f"{entry.page or entry.url} yourself."
        )
    pooch = _pooch()
    folder = (cache if cache is not None else default_cache()) / entry.name
    target = folder / entry.file
    was_there = target.is_file() and (entry.sha256 is None or sha256_of(target) == entry.sha256)
    known = None if entry.sha256 is None else f"sha256:{entry.sha256}"
    try:
        path = Path(pooch.retrieve(entry.url, known, fname=entry.file, path=folder))
    except ValueError as exc:  # pooch: the downloaded file's hash does not match
        raise DownloadError(
            f"The file downloaded for {entry.name} from {entry.url} does not have the sha256 the "
            f"catalogue lists ({entry.sha256}): the server sent something else (changed upstream, "
            "a proxy's error page, or a broken transfer). Nothing was kept in the cache "
            f"{folder}. Try again later; if it persists the catalogue entry needs updating."
        ) from exc
    except OSError as exc:  # requests' errors derive from OSError (IOError)
        raise DownloadError(
            f"Could not download {entry.name} from {entry.url}: {_reason(exc)}. Check the "
            "network connection (or a proxy: HTTPS_PROXY) and try again; nothing was written "
            f"to the cache {folder}."
        ) from exc
    digest = entry.sha256 or sha256_of(path)
    result = Fetched(cached=path, sha256=digest, downloaded=not was_there)
    if output is None:
        return result
    written = _copy_out(path, digest, output)
    return Fetched(path, digest, result.downloaded, output / entry.file, written)


def _reason(exc: OSError) -> str:
    text = str(exc)
    if "Connection refused" in text or "Failed to establish" in text:
        return "the server could not be reached (connection refused)"
    if "Name or service not known" in text or "NameResolution" in text:
        return "the host name could not be resolved (no network?)"
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _copy_out(source: Path, digest: str, folder: Path) -> bool:
    """Copy ``source`` into ``folder`` atomically; False if an identical copy is there."""
    if folder.exists() and not folder.is_dir():
        raise DownloadError(
            f"-o {folder} is a file: expected a folder to put the dataset in. Give a folder "
            "(it is created if missing)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / source.name
    if final.exists():
        if final.is_file() and sha256_of(final) == digest:
            return False
        raise DownloadError(
            f"{final} already exists and is not this dataset (its content differs); it is left "
            "as it is. Remove or rename it, or give another folder with -o."
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{source.name}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True
