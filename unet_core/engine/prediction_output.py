"""Prediction output files: naming, refusing to clobber, and never leaving half a file.

A predictor writes into a temporary file next to the final one and renames it into place
when every dataset is complete (``os.replace`` is atomic on one filesystem). An existing
output is an error unless ``overwrite`` is set; a failure removes the temporary file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.errors import DataError


@dataclass
class Written:
    """One completed output file and what it holds."""

    path: str
    datasets: list[str]
    metrics: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the input file (or image) it was predicted from


def output_path(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None,
    suffix: str = "_predictions",
    extension: str = ".h5",
) -> Path:
    """``<output_dir or input's folder>/<input stem><suffix><extension>`` (reference naming)."""
    src = Path(input_path)
    folder = Path(output_dir) if output_dir not in (None, "") else src.parent
    name = _stem(src)
    return folder / f"{name}{suffix}{extension}"


def _stem(path: Path) -> str:
    """The name without the suffix of the format that reads it (``x.ome.zarr`` -> ``x``)."""
    from unet_core import formats

    found = formats.claim(str(path))
    lowered = path.name.lower()
    if found is not None:
        for suffix in sorted(found[1].suffixes, key=len, reverse=True):
            if lowered.endswith(suffix):
                return path.name[: -len(suffix)]
    return path.name if path.is_dir() else path.stem


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse an existing output unless ``overwrite``; make the folder."""
    if path.exists() and not overwrite:
        raise DataError(
            f"Output file {str(path)!r} already exists; unet-core does not replace earlier "
            "predictions silently. Delete or move it, choose another loaders.output_dir, or "
            "pass --overwrite (or set predictor.overwrite: true) to replace it."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"Cannot create the output folder {str(path.parent)!r}: {exc.strerror or exc}. "
            "Set loaders.output_dir to a writable folder."
        ) from None


@contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    check_writable(path, overwrite)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".partial" + path.suffix, dir=path.parent
    )
    os.close(fd)
    os.unlink(tmp)  # h5py/tifffile create it themselves
    try:
        yield Path(tmp)
        check_writable(path, overwrite)  # someone else may have written it meanwhile
        replace_path(Path(tmp), path)
    except BaseException:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)  # folder formats (zarr)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        raise


def replace_path(tmp: Path, path: Path) -> None:
    """``os.replace`` that also replaces an existing output folder (zarr outputs are
    folders, which ``os.replace`` cannot put over a non-empty one)."""
    if not path.is_dir():
        os.replace(tmp, path)
        return
    old = path.with_name(f".{path.name}.replaced")
    os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def quantize(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 probabilities -> the output dtype (uint8: round(p*255), clipped to [0, 1])."""
    if dtype == "float32":
        return values.astype(np.float32, copy=False)
    if dtype == "float16":
        return values.astype(np.float16)
    if dtype == "uint8":
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"unknown output dtype {dtype!r}")


def segmentation_dtype(max_label: int) -> np.dtype[Any]:
    """uint16 while labels fit (the reference's dtype), uint32 beyond."""
    return np.dtype(np.uint16) if max_label < 2**16 else np.dtype(np.uint32)
