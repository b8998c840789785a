"""Which files a ``file_paths`` list means, and where a TIFF's label/weight file lives.

Folders expand like the reference (``traverse_h5_paths``): not recursive, grouped by suffix in
the order the installed volume formats list them (:func:`unet_core.formats.suffixes`: HDF5's
``.h5 .hdf .hdf5 .hd5``, TIFF's ``.tif .tiff``, then any plugin's). Inside a group the names are
sorted, so the order no longer depends on the file system.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from unet_core.errors import ConfigError, DataError
from unet_core.io.scratch import is_temporary


def is_single_array(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds one array (TIFF-like: label/weight arrays are sibling files)."""
    from unet_core import formats

    return formats.is_single_array(str(path))


def volume_suffixes() -> tuple[str, ...]:
    """Suffixes of every installed volume format, in format order."""
    from unet_core import formats

    return formats.suffixes()


def list_folder(folder: Path, extensions: Sequence[str] | None = None) -> list[str]:
    """Files of ``folder`` with the given extensions: grouped by extension, sorted in a group.

    Hidden and unfinished files (``.name``, ``*.partial.*``, our temporary files) are never
    inputs: a killed run's leftovers must not be read as data. Skipping one is noted."""
    if extensions is None:
        extensions = volume_suffixes()
    entries = [p for p in folder.iterdir() if p.is_file()]
    skipped = sorted(
        p.name for p in entries if is_temporary(p.name) and p.name.endswith(tuple(extensions))
    )
    if skipped:
        warnings.warn(
            f"Ignored {len(skipped)} hidden or unfinished file(s) in {folder} (temporary files "
            f"are never inputs; list a file by name to use it): {', '.join(skipped[:5])}"
            f"{' ...' if len(skipped) > 5 else ''}.",
            stacklevel=2,
        )
    entries = [p for p in entries if not is_temporary(p.name)]
    out: list[str] = []
    for ext in extensions:
        # exact suffix match, as the reference's glob("*.h5") (case-sensitive on Linux)
        out += sorted(str(p) for p in entries if p.name.endswith(ext))
    return out


def expand_file_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    key: str = "file_paths",
    extensions: Sequence[str] | None = None,
) -> list[str]:
    """Files and folders -> input files; DataError for a missing path or an empty folder."""
    from unet_core import formats

    results: list[str] = []
    for raw in paths:
        if formats.scheme_of(str(raw)) is not None:  # a URL: its format opens it
            formats.for_path(str(raw), key=key)
            results.append(str(raw))
            continue
        path = Path(os.path.expanduser(str(raw)))
        if path.is_dir():
            extensions = volume_suffixes() if extensions is None else extensions
            found = list_folder(path, extensions)
            if not found:
                raise DataError(
                    f"The folder {path} given in {key} contains no input files: expected files "
                    f"ending in {' '.join(extensions)} directly inside it (sub-folders are not "
                    f"searched). Put the volumes there or list the files themselves in {key}."
                )
            results += found
        elif path.is_file():
            results.append(str(path))
        else:
            parent = path.parent if str(path.parent) else Path(".")
            hint = (
                f"its folder {parent} exists but has no such file"
                if parent.is_dir()
                else f"its folder {parent} does not exist either"
            )
            raise DataError(
                f"The path {path} given in {key} does not exist ({hint}; relative paths are "
                f"resolved from {os.getcwd()}). Fix the path in {key}."
            )
    return results


def overlapping(first: Iterable[str], second: Iterable[str]) -> list[str]:
    """Files present in both lists, compared as resolved real paths."""
    seen = {os.path.realpath(p) for p in first}
    return sorted({p for p in second if os.path.realpath(p) in seen})


def tiff_sibling(raw_path: str, name: str, raw_name: str, *, key: str) -> str:
    """The file that holds ``name`` (a label/weight "internal path") for the raw TIFF.

    A TIFF holds one array, so for TIFF inputs the internal-path keys name files:

    * a template with ``{stem}`` (and optionally a folder or extension), relative to the raw
      file's folder: ``{stem}_labels.tif``, ``../masks/{stem}.tif``;
    * otherwise a word that replaces the raw word (``raw_internal_path``) in the raw file's
      name: ``nuclei2d_raw.tif`` with ``label_internal_path: labels`` -> ``nuclei2d_labels.tif``;
    * if the raw name does not contain that word: ``<stem>_<name><ext>``.
    """
    raw = Path(raw_path)
    stem, ext = raw.name[: -len(raw.suffix)], raw.suffix
    word = name.strip("/")
    if "{stem}" in name:
        try:
            target = name.format(stem=stem)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{key} {name!r} is not a valid file template ({exc}); the only placeholder "
                f"allowed is {{stem}}, e.g. '{{stem}}_labels.tif'."
            ) from None
        candidate = raw.parent / (target if Path(target).suffix else target + ext)
        tried = [candidate]
    else:
        raw_word = raw_name.strip("/")
        if raw_word and raw_word in stem:
            head, _, tail = stem.rpartition(raw_word)
            tried = [raw.parent / f"{head}{word}{tail}{ext}"]
        else:
            tried = []
        tried.append(raw.parent / f"{stem}_{word}{ext}")
    for candidate in tried:
        if candidate.is_file():
            return str(candidate)
    others = (
        sorted(
            p.name
            for p in raw.parent.iterdir()
            if p.suffix.lower() == raw.suffix.lower() and p.name != raw.name
        )
        if raw.parent.is_dir()
        else []
    )
    raise DataError(
        f"No {key} file for the TIFF input {raw_path}: looked for "
        f"{', '.join(str(t) for t in tried)}. For TIFF inputs {key} names a file next to the "
        f"raw one: a word that replaces {raw_name!r} in the raw file's name, or a template such "
        f"as '{{stem}}_labels.tif'. {raw.suffix} files in that folder: "
        f"{', '.join(others) or 'none'}."
    )


def drop_companions(files: list[str], names: Sequence[str], raw_name: str) -> list[str]:
    """Remove single-array files (TIFF) that are another file's label/weight file (a folder
    lists both)."""
    single = {p for p in files if is_single_array(p)}
    companions: set[str] = set()
    for path in files:
        if path not in single:
            continue
        for name in names:
            try:
                companions.add(os.path.realpath(tiff_sibling(path, name, raw_name, key="-")))
            except (DataError, ConfigError):
                continue
    return [p for p in files if not (p in single and os.path.realpath(p) in companions)]
