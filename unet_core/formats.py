"""Volume formats: the contract of a ``unet.formats`` plugin and the choice of one for a path.

A format opens a path (or URL) for reading as lazy arrays and creates outputs that are written
block by block. The core never names a format: it asks the registry which installed format
claims a path (by URL scheme, else by suffix) and which suffixes a folder listing should pick
up, so a format from a third-party package works in every dataset, predictor and command.
"""

from __future__ import annotations

from typing import Any

from unet_core.errors import DataError
from unet_core.interfaces import ArrayLike as ArrayLike  # the format contract, re-exported
from unet_core.interfaces import VolumeFormat as VolumeFormat
from unet_core.interfaces import VolumeInfo as VolumeInfo
from unet_core.interfaces import VolumeReader as VolumeReader
from unet_core.interfaces import VolumeWriter as VolumeWriter
from unet_core.interfaces import WritableArray as WritableArray

KIND = "formats"


# -- choosing a format -------------------------------------------------------------------------
_INSTANCES: dict[tuple[str, int], Any] = {}


def names() -> list[str]:
    """Installed formats (built-ins and plugins alike)."""
    from unet_core import registry

    return registry.list(KIND)


def get(name: str) -> VolumeFormat:
    """The format registered as ``name`` (one instance per registered class)."""
    from unet_core import registry

    key = (name, id(registry.get(KIND, name)))
    if key not in _INSTANCES:
        _INSTANCES[key] = registry.create(KIND, {"name": name})
    fmt: VolumeFormat = _INSTANCES[key]
    return fmt


def _usable() -> list[tuple[str, VolumeFormat]]:
    from unet_core.errors import PluginError

    found = []
    for name in names():
        try:
            found.append((name, get(name)))
        except PluginError:
            continue  # broken plugins are reported by `unet plugins list`, not here
    return found


def suffixes() -> tuple[str, ...]:
    """Every suffix some installed format reads, in format order (folder listings)."""
    return tuple(s for _, fmt in _usable() for s in fmt.suffixes)


def scheme_of(path: str) -> str | None:
    head, sep, _ = str(path).partition("://")
    return head.lower() if sep and head.replace("+", "").isalnum() else None


def claim(path: str) -> tuple[str, VolumeFormat] | None:
    """(name, format) of the installed format that reads ``path``, or None."""
    scheme = scheme_of(path)
    lowered = str(path).lower().rstrip("/")
    best: tuple[int, str, VolumeFormat] | None = None
    for name, fmt in _usable():
        if scheme is not None:
            if scheme in fmt.schemes:
                return name, fmt
            continue
        for suffix in fmt.suffixes:
            if lowered.endswith(suffix) and (best is None or len(suffix) > best[0]):
                best = (len(suffix), name, fmt)
    return (best[1], best[2]) if best else None


def describe() -> str:
    """'hdf5 (.h5 .hdf5), tiff (.tif .tiff)' for messages."""
    parts = [
        f"{n} ({' '.join((*f.suffixes, *(s + '://' for s in f.schemes)))})" for n, f in _usable()
    ]
    return ", ".join(parts) or "none"


def for_path(path: str, *, key: str = "file_paths") -> VolumeFormat:
    """The format that reads ``path``; DataError listing the installed ones if none does."""
    found = claim(path)
    if found is None:
        raise DataError(
            f"Cannot read {path} ({key}): no installed volume format claims it. Installed "
            f"formats: {describe()}. Convert the file to one of them, fix {key}, or install a "
            f"package that adds the format (entry-point group unet.formats)."
        )
    return found[1]


def for_output(name: str, *, key: str = "predictor.output_format") -> VolumeFormat:
    """The format named ``name`` for writing; DataError listing the installed ones."""
    if name not in names():
        raise DataError(
            f"{key}: {name!r} is not an installed volume format. Installed formats: "
            f"{describe()}. Pick one of them or install the package that adds {name!r}."
        )
    fmt = get(name)
    if not callable(getattr(fmt, "create", None)):
        raise DataError(
            f"{key}: the volume format {name!r} can only be read, not written. Pick a format "
            f"that writes outputs: {describe()}."
        )
    return fmt


def output_format_name(cls: Any, value: str) -> str:
    """Pydantic field validator: ``value`` must name an installed format (no import)."""
    installed = names()
    if value not in installed:
        raise ValueError(
            f"{value!r} is not an installed volume format; installed: {', '.join(installed)}"
        )
    return value


def is_single_array(path: str) -> bool:
    """Whether ``path`` is read by a one-array-per-file format (label files are siblings)."""
    found = claim(path)
    return bool(found and found[1].single_array)


def open_volume(path: str, *, primary: str = "raw", key: str = "file_paths") -> VolumeReader:
    """``path`` opened read-only by the format that claims it."""
    return for_path(path, key=key).open(str(path), primary=primary, key=key)


def read_info(path: str, name: str, *, primary: str = "raw") -> VolumeInfo:
    """Voxel size and axes of ``name`` in ``path``; empty if the format cannot say."""
    reader = open_volume(path, primary=primary)
    try:
        return reader.info(name)
    except Exception:  # noqa: BLE001 - metadata is a courtesy, never a reason to fail
        return VolumeInfo()
    finally:
        reader.close()
