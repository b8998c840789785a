"""Reading a bioimage.io model package (zip, folder or rdf.yaml) without executing anything.

The description is read with ``yaml.safe_load``; weight files are read as bytes from the zip or
folder and checked against the sha256 the description lists. Both layouts of the weights entry
are understood: spec 0.5 (``architecture: {callable, import_from | source, kwargs}``) and 0.4
(``architecture: "module.or/file.py:Callable"`` with ``kwargs`` beside it), which is how the
PlantSeg zoo's pytorch-3dunet models are published.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unet_core.errors import ModelPackageError

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")


def is_model_package(path: str | Path) -> bool:
    """True for a zip holding an rdf.yaml, a folder with one, or an rdf.yaml file itself."""
    p = Path(path)
    if p.is_dir():
        return any((p / name).is_file() for name in RDF_NAMES)
    if p.name in RDF_NAMES or p.name.endswith(".bioimageio.yaml"):
        return p.is_file()
    if p.suffix.lower() == ".zip" and zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            return any(name in z.namelist() for name in RDF_NAMES)
    return False


@dataclass(frozen=True)
class Architecture:
    """What builds the network: a callable's module (or file) and name, and its kwargs."""

    callable: str
    module: str | None
    file: str | None
    kwargs: dict[str, Any]


@dataclass
class ModelPackage:
    """An opened package: its description and a way to read its files by name."""

    location: Path
    rdf: dict[str, Any]
    _zip: Path | None
    _root: Path | None

    def read(self, name: str, *, sha256: str | None = None, what: str = "file") -> bytes:
        """The bytes of a packaged file, checked against ``sha256`` when the package lists one."""
        try:
            if self._zip is not None:
                with zipfile.ZipFile(self._zip) as z:
                    data = z.read(name)
            else:
                assert self._root is not None
                data = (self._root / name).read_bytes()
        except (KeyError, FileNotFoundError, IsADirectoryError):
            raise ModelPackageError(
                f"The model package {str(self.location)!r} lists {what} {name!r}, but the "
                "package holds no such file. The package is incomplete: download or export it "
                "again (a zip must contain every file its rdf.yaml names)."
            ) from None
        if sha256 and hashlib.sha256(data).hexdigest() != str(sha256).lower():
            raise ModelPackageError(
                f"{what.capitalize()} {name!r} in the model package {str(self.location)!r} does "
                f"not match the sha256 its rdf.yaml lists ({str(sha256)[:12]}..., the file has "
                f"{hashlib.sha256(data).hexdigest()[:12]}...): it was changed or corrupted after "
                "packaging. Download or export the package again; do not edit files inside it."
            )
        return data

    def weights(self, fmt: str) -> dict[str, Any] | None:
        entry = (self.rdf.get("weights") or {}).get(fmt)
        return entry if isinstance(entry, dict) else None

    def architecture(self) -> Architecture | None:
        """The ``pytorch_state_dict`` architecture, in either spec layout; None without one."""
        entry = self.weights("pytorch_state_dict")
        if entry is None:
            return None
        arch = entry.get("architecture")
        if isinstance(arch, dict):  # spec 0.5
            return Architecture(
                callable=str(arch.get("callable", "")),
                module=arch.get("import_from"),
                file=arch.get("source"),
                kwargs=dict(arch.get("kwargs") or {}),
            )
        if isinstance(arch, str) and ":" in arch:  # spec 0.4: "where:Callable"
            where, _, name = arch.rpartition(":")
            is_file = where.endswith(".py") or "/" in where
            return Architecture(
                callable=name,
                module=None if is_file else where,
                file=where if is_file else None,
                kwargs=dict(entry.get("kwargs") or {}),
            )
        return None


def open_package(path: str | Path) -> ModelPackage:
    """Open a zip, folder or rdf.yaml as a :class:`ModelPackage` (one paragraph if not one)."""
    import yaml

    p = Path(path)
    if not p.exists():
        raise ModelPackageError(
            f"Model package {str(p)!r} does not exist; give the path of a bioimage.io package "
            "(a .zip, its unpacked folder or its rdf.yaml)."
        )
    zip_path: Path | None = None
    root: Path | None = None
    if p.is_dir():
        root, text = p, _read_rdf_file(next(p / n for n in RDF_NAMES if (p / n).is_file()))
    elif zipfile.is_zipfile(p):
        zip_path = p
        with zipfile.ZipFile(p) as z:
            name = next((n for n in RDF_NAMES if n in z.namelist()), None)
            if name is None:
                raise ModelPackageError(
                    f"{str(p)!r} is a zip without an rdf.yaml, so it is not a bioimage.io "
                    "model package; give the package zip downloaded from bioimage.io or "
                    "written by `unet export --format bioimageio`."
                )
            text = z.read(name).decode()
    else:
        root, text = p.parent, _read_rdf_file(p)
    try:
        rdf = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelPackageError(f"The rdf.yaml of {str(p)!r} is not valid YAML: {exc}.") from None
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise ModelPackageError(
            f"{str(p)!r} does not describe a model (its rdf.yaml has type "
            f"{rdf.get('type') if isinstance(rdf, dict) else None!r}); give a model package."
        )
    return ModelPackage(p, rdf, zip_path, root)


def _read_rdf_file(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelPackageError(f"Cannot read {str(path)!r}: {exc}.") from None
