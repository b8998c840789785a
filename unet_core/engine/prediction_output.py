"""Prediction output files: naming, refusing to clobber, and never leaving half a file.

A predictor writes into a temporary file next to the final one and renames it into place
when every dataset is complete (``os.replace`` is atomic on one filesystem). An existing
output is an error unless ``overwrite`` is set; a failure removes the temporary file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.errors import DataError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".hd5")
TIFF_SUFFIXES = (".tif", ".tiff")


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
    name = src.name if src.is_dir() else src.stem
    return folder / f"{name}{suffix}{extension}"


def preview_path(output: Path) -> Path:
    """Where ``unet predict --preview`` draws an output: ``<output stem>_preview.png``."""
    return output.with_name(f"{output.stem}_preview.png")


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
def atomic_output(path: Path, overwrite: bool, needed: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` (durably) if the block
    succeeds. A full or failing disk becomes a :class:`StorageError` naming ``path``."""
    from unet_core.io.atomic import durable_replace
    from unet_core.io.scratch import temp_file
    from unet_core.io.space import is_storage_error, storage_error

    check_writable(path, overwrite)
    tmp = temp_file(path.parent, path.stem, "partial", path.suffix)
    os.unlink(tmp)  # h5py/tifffile create it themselves
    try:
        yield tmp
        check_writable(path, overwrite)  # someone else may have written it meanwhile
        durable_replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if is_storage_error(exc):
            raise storage_error(exc, path, needed) from None  # type: ignore[arg-type]
        raise


def open_h5(path: Path, mode: str = "w") -> Any:
    """An HDF5 output file without a chunk cache: every write reaches the disk at once, so a
    full disk fails that write (caught above) instead of crashing HDF5 when the file is
    closed with cached chunks it can no longer flush (a segfault in HDF5 2.0)."""
    import h5py

    return h5py.File(path, mode, rdcc_nbytes=0)


def record_source(f: Any, source: str | os.PathLike[str]) -> None:
    """Note in the output which input it was predicted from (``unet evaluate`` checks it)."""
    f.attrs["unet_source"] = os.path.realpath(source)


def h5_compression(compression: str | int | None) -> dict[str, Any]:
    """``gzip``/``lzf``/``none``/a gzip level -> h5py create_dataset keywords."""
    if compression in (None, "none", False):
        return {}
    if compression == "gzip":
        return {"compression": "gzip"}
    if compression == "lzf":
        return {"compression": "lzf"}
    if isinstance(compression, int) and not isinstance(compression, bool):
        return {"compression": "gzip", "compression_opts": int(compression)}
    raise ValueError(f"unknown compression {compression!r}")


def h5_chunks(shape: Sequence[int], chunks: Sequence[int] | None, default: Any = True) -> Any:
    """Chunk shape for a (C,)Z,Y,X dataset from spatial ``chunks`` (channel chunk 1)."""
    if chunks is None:
        return default
    spatial = tuple(min(int(c), int(s)) for c, s in zip(chunks, shape[-3:]))
    return (1,) * (len(shape) - 3) + spatial


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


def write_tiff(path: Path, arrays: dict[str, np.ndarray]) -> list[str]:
    """TIFF output: the first array at ``path``, the others as ``<stem>_<name>.tif``."""
    import tifffile

    names = []
    for i, (name, array) in enumerate(arrays.items()):
        target = path if i == 0 else path.with_name(f"{path.stem}_{name}{path.suffix}")
        tifffile.imwrite(target, array, compression="zlib", metadata={"axes": _axes(array)})
        names.append(name)
    return names


def _axes(array: np.ndarray) -> str:
    return {2: "YX", 3: "ZYX", 4: "CZYX"}.get(array.ndim, "Q" * array.ndim)
