"""Write an output file so that readers only ever see a complete one.

The content goes to a temporary name in the destination folder (same file system, so the
final ``os.replace`` is atomic); on success it is flushed to disk and renamed over the
destination, on any failure the temporary file is removed and an old destination survives.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def fsync_path(path: str | Path, directory: bool = False) -> None:
    """Flush a file (or a folder, making a rename durable); best effort where not allowed."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0)
    try:
        fd = os.open(path, flags)
    except OSError:  # e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def durable_replace(tmp: str | Path, final: str | Path) -> None:
    """Rename a finished ``tmp`` over ``final`` so that both survive a power cut: the file's
    data is flushed before the rename and the folder's entry after it."""
    fsync_path(tmp)
    os.replace(tmp, final)
    fsync_path(Path(final).parent, directory=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    Usage: ``with atomic_output(out) as tmp: h5py.File(tmp, "w") ...`` (close the file inside
    the block). The destination folder is created if missing.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp
        durable_replace(tmp, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        from unet_core.io.space import is_storage_error, storage_error

        if is_storage_error(exc):  # a full or failing disk: one paragraph naming the file
            raise storage_error(exc, final, None) from None  # type: ignore[arg-type]
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` with ``text`` in one step; the old file survives any failure."""
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
