"""An OS-level lock on a run folder, so that one training process at a time writes into it.

``fcntl.flock`` on ``<folder>/.unet-run.lock``, held from the claim until the run ends. The
kernel drops the lock when the process dies, however it dies (SIGKILL included), so a lock file
left behind by a killed run is free and is simply taken over. The file names its holder (pid,
host, start time) so that a refused process can say who has the folder. The file is removed
while still locked at release; an acquirer checks that the file it locked is still the one at
the path, so it never holds a lock on a removed file.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from unet_core.errors import CheckpointError

LOCK_NAME = ".unet-run.lock"


def _holder_text() -> bytes:
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return (json.dumps(me) + "\n").encode()


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        raw = os.pread(fd, 4096, 0)
        holder = json.loads(raw.decode()) if raw.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    """'pid 123 on host h (since 2026-01-01 10:00:00)', or a vaguer phrase when unknown."""
    if not holder:
        return "another process (it has not written its pid yet)"
    return (
        f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
        f"(since {holder.get('since', '?')})"
    )


class FolderLock:
    """The held lock of one folder; :meth:`release` gives it back and removes the file."""

    def __init__(self, path: Path, fd: int | None, previous: dict[str, Any] | None) -> None:
        self.path = path
        self._fd = fd
        #: What the lock file said when we took it: a killed run's holder, or None.
        self.previous = previous

    @classmethod
    def acquire(cls, folder: Path) -> FolderLock:
        """Take the folder's lock at once or raise CheckpointError naming its holder."""
        try:
            import fcntl
        except ImportError:  # no flock on this platform: run unlocked
            return cls(folder / LOCK_NAME, None, None)
        path = folder / LOCK_NAME
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise _busy(folder, holder) from None
                raise CheckpointError(
                    f"Could not lock the run folder {str(folder)!r} (trainer.checkpoint_dir): "
                    f"{exc.strerror or exc}. Training was not started. Use a folder on a local "
                    "file system that supports file locks."
                ) from None
            if _same_file(fd, path):
                break
            os.close(fd)  # we locked a file another run removed meanwhile: take the new one
        previous = _read_holder(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_text(), 0)
        return cls(path, fd, previous)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the lock file (still holding it) and drop the lock; idempotent."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, now = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _busy(folder: Path, holder: dict[str, Any] | None) -> CheckpointError:
    return CheckpointError(
        f"The run folder {str(folder)!r} (trainer.checkpoint_dir) is in use by a training "
        f"process that is still running: {describe_holder(holder)}. Two runs in one folder "
        "would overwrite each other's checkpoints, so this one was not started. Wait for that "
        "run to finish (then continue it with `--resume` or start over with `--overwrite`), "
        "stop it, or choose another folder with `--set trainer.checkpoint_dir=...`."
    )
