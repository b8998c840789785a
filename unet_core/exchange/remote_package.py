"""``model_path`` by URL or bioimage.io ID, through the checksummed model cache.

- ``https://.../model.zip`` (optionally ``#sha256=<64 hex>``): the zip is downloaded once into
  ``<cache>/models/urls/<hash of the URL>/`` by the same pooch machinery as ``unet models
  pull``; with a sha256 it is verified, and the weights inside are always checked against the
  sha256 values the package lists when they are read.
- ``https://.../rdf.yaml`` or ``bioimageio:ID`` (e.g. ``bioimageio:affable-shark``): the
  description and the weight files it names are downloaded into
  ``<cache>/models/bioimageio/<ID>/``; an ID is resolved through bioimage.io's ``id_map.json``
  (``{id: {source, sha256}}``, the map bioimageio.spec uses; another one with the environment
  variable ``UNET_BIOIMAGEIO_ID_MAP``), whose sha256 verifies the description, whose own
  sha256 values verify the weights. The files are staged in a temporary folder that is renamed
  into place only when all arrived, so an interrupted download leaves nothing in the cache.

A model already in the cache is used without any network access; offline and not cached is
one clear error.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from unet_core.errors import DownloadError

BIOIMAGEIO_PREFIX = "bioimageio:"
ID_MAP_ENV = "UNET_BIOIMAGEIO_ID_MAP"
DEFAULT_ID_MAP = "https://uk1s3.embassy.ebi.ac.uk/public-datasets/bioimage.io/id_map.json"
#: Weight formats unet-core runs: what is downloaded of a described package.
WEIGHT_FORMATS = ("pytorch_state_dict", "torchscript", "onnx")
_SHA = re.compile(r"^[0-9a-f]{64}$")


def is_remote(model_path: str | os.PathLike[str] | None) -> bool:
    text = str(model_path or "")
    return text.startswith(("http://", "https://", BIOIMAGEIO_PREFIX))


def local_model_path(model_path: str, cache: Path | None = None) -> str:
    """A local path for ``model_path``: itself, or the cached download of a URL / ID."""
    if not is_remote(model_path):
        return model_path
    if model_path.startswith(BIOIMAGEIO_PREFIX):
        return str(_by_id(model_path[len(BIOIMAGEIO_PREFIX) :].strip(), cache))
    url, _, fragment = model_path.partition("#")
    sha = _fragment_sha(model_path, fragment)
    if urlsplit(url).path.endswith((".yaml", ".yml")):
        folder = _models(cache) / "urls" / _digest(url)
        return str(_described(url, sha, folder, what=model_path))
    return str(_zip(url, sha, _models(cache) / "urls", model_path))


def _models(cache: Path | None) -> Path:
    from unet_core.exchange.model_catalog import model_cache

    return model_cache(cache)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _fragment_sha(model_path: str, fragment: str) -> str | None:
    if not fragment:
        return None
    key, _, value = fragment.partition("=")
    if key != "sha256" or not _SHA.match(value.lower()):
        raise DownloadError(
            f"model_path {model_path!r} ends in #{fragment}; the only fragment understood is "
            "#sha256=<64 hex digits>, the checksum of the file at the URL. Fix or drop it."
        )
    return value.lower()


def _entry(name: str, url: str, file: str, sha: str | None) -> Any:
    from unet_core.fetch.catalog import CatalogEntry

    return CatalogEntry(name=name, url=url, file=file, sha256=sha, description="", licence="")


def _zip(url: str, sha: str | None, folder: Path, what: str) -> Path:
    """The cached zip of ``url`` (downloaded now if missing)."""
    from unet_core.fetch.download import fetch

    file = Path(urlsplit(url).path).name or "model.zip"
    entry = _entry(_digest(url), url, file, sha)
    return _offline_hint(
        what, folder / entry.name, lambda: fetch(entry, folder, trust_unverified=True).cached
    )


def _by_id(model_id: str, cache: Path | None) -> Path:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", model_id) or ".." in model_id:
        raise DownloadError(
            f"model_path bioimageio:{model_id} is not a bioimage.io ID; IDs look like "
            "bioimageio:affable-shark (or bioimageio:affable-shark/1.1 for one version)."
        )
    folder = _models(cache) / "bioimageio" / model_id.replace("/", "@")
    if _complete(folder):
        return folder
    what = f"bioimageio:{model_id}"

    def resolve() -> Path:
        source, sha = _lookup(model_id)
        return _described(source, sha, folder, what=what)

    return _offline_hint(what, folder, resolve)


def _lookup(model_id: str) -> tuple[str, str | None]:
    """(rdf URL, its sha256) of ``model_id`` from the id map."""
    import json

    from unet_core.fetch.download import fetch

    url = os.environ.get(ID_MAP_ENV) or DEFAULT_ID_MAP
    with tempfile.TemporaryDirectory(prefix="unet-id-map-") as tmp:
        path = fetch(_entry("id_map", url, "id_map.json", None), Path(tmp), trust_unverified=True)
        try:
            id_map = json.loads(path.cached.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise DownloadError(f"The bioimage.io ID map {url} is not JSON: {exc}.") from None
    entry = id_map.get(model_id) if isinstance(id_map, dict) else None
    if not isinstance(entry, dict) or "source" not in entry:
        import difflib

        close = difflib.get_close_matches(
            model_id, list(id_map) if isinstance(id_map, dict) else []
        )
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise DownloadError(
            f"bioimageio:{model_id} is not in the bioimage.io ID map {url}.{hint} Check the ID "
            "on https://bioimage.io (the model's page shows it), or give the package's URL."
        )
    sha = entry.get("sha256")
    return str(entry["source"]), str(sha).lower() if sha else None


def _described(rdf_url: str, sha: str | None, folder: Path, *, what: str) -> Path:
    """The package described at ``rdf_url`` as a folder in the cache: its description and
    its weight files, staged and renamed into ``folder`` once all arrived."""
    import yaml

    from unet_core.fetch.download import fetch

    if _complete(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        got = fetch(_entry("files", rdf_url, "source.yaml", sha), stage, trust_unverified=True)
        rdf = yaml.safe_load(got.cached.read_text())
        got.cached.unlink()  # verified; the cached copy is the rewritten rdf.yaml below
        if not isinstance(rdf, dict) or not isinstance(rdf.get("weights"), dict):
            raise DownloadError(
                f"{what} resolved to {rdf_url}, which does not describe a model with weights; "
                "give the URL of a model's rdf.yaml or package zip."
            )
        for fmt in WEIGHT_FORMATS:
            entry = rdf["weights"].get(fmt)
            if not isinstance(entry, dict) or not entry.get("source"):
                continue
            url = urljoin(rdf_url, str(entry["source"]))
            local = Path(urlsplit(url).path).name
            file_sha = entry.get("sha256")
            fetch(
                _entry("files", url, local, file_sha and str(file_sha).lower()),
                stage,
                trust_unverified=True,
            )
            entry["source"] = local  # the cached copy names its files locally
        (stage / "files" / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
        if folder.exists():  # an earlier, incomplete copy (never the case after a full one)
            shutil.rmtree(folder)
        os.replace(stage / "files", folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return folder


def _complete(folder: Path) -> bool:
    """A cached described package: its rdf.yaml and every weight file it names are there."""
    import yaml

    rdf_file = folder / "rdf.yaml"
    if not rdf_file.is_file():
        return False
    rdf = yaml.safe_load(rdf_file.read_text()) or {}
    weights = rdf.get("weights") or {}
    return all(
        (folder / str(e["source"])).is_file()
        for f, e in weights.items()
        if f in WEIGHT_FORMATS and isinstance(e, dict) and e.get("source")
    )


def _offline_hint(what: str, where: Path, get: Any) -> Path:
    """``get()``; a failed connection says that the model is not cached either."""
    try:
        result: Path = get()
    except DownloadError as exc:
        if not exc.message.startswith("Could not download"):
            raise
        raise DownloadError(
            f"model_path {what} is not in the model cache ({where}) and could not be "
            f"downloaded: {exc.message} Once it has been downloaded, it is used offline."
        ) from None
    return result
