"""The human side of a bioimage.io package: name, authors, licence, citation, documentation.

Read from a small YAML (``--metadata``) so the same facts travel with every export of a model::

    name: Nuclei 3D U-Net
    description: Foreground probability of nuclei in confocal stacks.
    authors: [{name: Ada Lovelace, affiliation: Some Lab}]
    license: MIT                     # an SPDX id
    cite: [{text: "Our paper", doi: 10.1234/abcd}]
    documentation: README.md         # optional; relative to the YAML file
    tags: [nuclei, segmentation]

Authors and licence have no honest default, so they are required; the U-Net paper is always
cited (added when missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unet_core.errors import ConfigError, ExportError

UNET_CITATIONS = {
    3: {"text": "Cicek et al. 3D U-Net (MICCAI 2016)", "doi": "10.1007/978-3-319-46723-8_49"},
    2: {"text": "Ronneberger et al. U-Net (MICCAI 2015)", "doi": "10.1007/978-3-319-24574-4_28"},
}


@dataclass
class PackageMetadata:
    name: str
    description: str
    authors: list[dict[str, Any]]
    license: str
    cite: list[dict[str, Any]] = field(default_factory=list)
    documentation: str | None = None
    tags: list[str] = field(default_factory=list)


def read_metadata(path: str | Path | None, *, default_name: str, dims: int) -> PackageMetadata:
    """The metadata YAML as a checked record (U-Net citation added)."""
    from unet_core.config.yaml_source import parse_yaml

    if path is None:
        raise ExportError(
            "A bioimage.io package needs its authors and licence, which only you can state. "
            "Give --metadata FILE, a YAML with at least `authors: [{name: ...}]` and `license: "
            "MIT` (an SPDX id); name, description, cite, documentation and tags are optional."
        )
    p = Path(path)
    try:
        data = parse_yaml(p.read_text(), f"--metadata {str(p)!r}") or {}
    except OSError as exc:
        raise ExportError(f"Cannot read --metadata {str(p)!r}: {exc.strerror or exc}.") from None
    except ConfigError as exc:
        raise ExportError(str(exc)) from None
    if not isinstance(data, dict):
        data = {}  # a list or a scalar: nothing it needs is there
    missing = [key for key in ("authors", "license") if not data.get(key)]
    if missing:
        raise ExportError(
            f"--metadata {str(p)!r} lacks {', '.join(missing)}: a bioimage.io package needs "
            "`authors: [{name: ...}]` and `license: <SPDX id>` (a YAML mapping); add them."
        )
    authors = [a if isinstance(a, dict) else {"name": str(a)} for a in data["authors"]]
    cite = [c if isinstance(c, dict) else {"text": str(c)} for c in data.get("cite") or []]
    unet = UNET_CITATIONS[dims]
    if not any(c.get("doi") == unet["doi"] for c in cite):
        cite.append(dict(unet))
    doc = data.get("documentation")
    return PackageMetadata(
        name=str(data.get("name") or default_name),
        description=str(data.get("description") or f"{default_name}, exported by unet-core."),
        authors=authors,
        license=str(data["license"]),
        cite=cite,
        documentation=str((p.parent / doc).resolve()) if doc else None,
        tags=[str(t) for t in data.get("tags") or []],
    )
