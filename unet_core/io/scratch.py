"""Names of our temporary files, so they are never inputs and a killed run's can be cleaned.

Every unfinished output (``partial``) and every scratch file unet-core makes is hidden (starts
with ``.``) and carries ``~unet-<kind>~<host>~<pid>~``: folder expansion skips it, and a later
run removes it once the process that made it (on this host) is gone. Files of a live process,
of another host, or not named by us are never touched.
"""

from __future__ import annotations

import os
import re
import socket
import tempfile
from pathlib import Path

_OURS = re.compile(r"~unet-(?P<kind>partial|scratch)~(?P<host>[^~/]+)~(?P<pid>\d+)~")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname() or "localhost")


def temp_file(folder: str | os.PathLike[str], stem: str, kind: str, suffix: str) -> Path:
    """Create an empty hidden temporary file in ``folder`` named as ours; returns its path."""
    prefix = f".{stem}~unet-{kind}~{_host()}~{os.getpid()}~"
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


def is_temporary(name: str) -> bool:
    """Hidden files and unfinished outputs: never inputs (``.x.h5``, ``x.partial.h5``)."""
    return name.startswith(".") or bool(_OURS.search(name)) or ".partial." in name


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Our temporary files in ``folder`` whose process (on this host) no longer runs."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    stale = []
    for entry in entries:
        match = _OURS.search(entry.name)
        if not match or not entry.name.startswith(".") or match["host"] != _host():
            continue
        if not _alive(int(match["pid"])) and entry.is_file():
            stale.append(entry)
    return sorted(stale)


def remove_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete :func:`stale_files`; returns what was removed (for a note to the user)."""
    removed = []
    for path in stale_files(folder):
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed
