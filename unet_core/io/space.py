"""Free space before writing, and a full or failing disk as one clear paragraph.

A prediction's size is known before it is computed (shape x dtype), so a folder that cannot
hold it is refused up front; a disk that fills up meanwhile (or a compressed estimate that was
too hopeful) ends as a :class:`StorageError` naming the file, never as a library traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import warnings
from pathlib import Path

from unet_core.errors import DataError

#: Errors that mean "the storage cannot take this write", not "the program is wrong".
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}
#: Room kept for HDF5 metadata and the file system's own blocks.
MARGIN_BYTES = 1 << 20


class StorageError(DataError):
    """The disk is full, over quota, read-only or failing while writing an output."""


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def free_bytes(folder: str | os.PathLike[str]) -> int:
    return int(shutil.disk_usage(folder).free)


def check_space(path: str | os.PathLike[str], needed: int, *, compressed: bool) -> None:
    """Refuse ``path`` when its folder cannot hold ``needed`` bytes (uncompressed outputs);
    for compressed ones, which are usually smaller, only warn."""
    folder = Path(path).parent
    free = free_bytes(folder)
    if free >= needed + MARGIN_BYTES:
        return
    if compressed:
        warnings.warn(
            f"{folder} has {_mb(free)} free and {path} may need up to {_mb(needed)} before "
            "compression; it may not fit.",
            stacklevel=2,
        )
        return
    raise StorageError(
        f"Not enough free space for {path}: it needs about {_mb(needed)} (shape x dtype) but "
        f"{folder} has {_mb(free)} free. Nothing was written. Free some space, write to "
        "another disk (loaders.output_dir) or choose a smaller output (predictor.output_dtype "
        "uint8/float16, predictor.compression gzip)."
    )


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def storage_error(exc: OSError, path: str | os.PathLike[str], needed: int | None) -> StorageError:
    """The paragraph for an OSError from :data:`STORAGE_ERRNOS` while writing ``path``."""
    folder = Path(path).parent
    try:
        free = _mb(free_bytes(folder))
    except OSError:
        free = "unknown"
    need = f"about {_mb(needed)} (uncompressed)" if needed else "unknown"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return StorageError(
        f"Writing {path} failed: {reason} (the disk holding {folder}; space needed {need}, "
        f"free now {free}). The unfinished file was removed and nothing was written under "
        f"{Path(path).name}; earlier outputs are intact. Free some space or write to another "
        "disk (loaders.output_dir), then run again."
    )
