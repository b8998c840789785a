"""A training run folder (``trainer.checkpoint_dir``) belongs to one run.

Why: checkpoints are days of compute. A new run into a folder that holds another run's files
would overwrite them, and a run that stopped before its first validation would leave the old
run's best checkpoint beside its own last one. So a run:

* takes the folder's OS lock first (:mod:`unet_core.training.run_lock`), for its whole life;
* refuses, before any work, a folder that holds another run's checkpoints or ``run.json``,
  unless it continues that run (``--resume`` from a checkpoint in the folder) or was told to
  start over (``--overwrite``: the old run's files are moved to ``previous-runs/<time>_<id>/``);
* removes temporaries that a killed run left (only our own names, only under the lock);
* records itself in ``run.json`` (written atomically) when it starts.

Only the names in :data:`RUN_FILES` (and our temporaries) are ever written, moved or removed;
anything else a user keeps in the folder is left alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.errors import CheckpointError, UsageError
from unet_core.io.atomic import fsync_path, write_text_atomic
from unet_core.training.run_lock import FolderLock, describe_holder

if TYPE_CHECKING:
    from unet_core.config.schema import ExperimentConfig

LAST = "last_checkpoint.pytorch"
BEST = "best_checkpoint.pytorch"
MANIFEST = "run.json"
PREVIOUS_RUNS = "previous-runs"
#: Everything a run writes into its folder; --overwrite moves exactly these aside.
RUN_FILES = (LAST, BEST, MANIFEST, "logs")
#: Temporaries of an interrupted run (checkpoint/manifest writes, the write probe).
STALE_PATTERNS = (f".{LAST}.*.tmp", f".{BEST}.*.tmp", f".{MANIFEST}.*.tmp", ".unet-write-test-*")


class RunFolder:
    """A claimed run folder: holds the lock; :meth:`start` records the run, :meth:`release`."""

    def __init__(
        self,
        path: Path,
        lock: FolderLock,
        *,
        manifest: dict[str, Any] | None,
        continues: bool,
        created: list[Path],
        notes: list[str],
    ) -> None:
        self.path = path
        self.lock = lock
        self.manifest = manifest
        self.continues = continues
        self.notes = notes
        self.started = False
        self._created = created

    def start(
        self,
        config: ExperimentConfig,
        *,
        resumed_from: str | None,
        precision: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Write ``run.json``: this run's id, config and model identity, owner, resume source
        and the precision ``trainer.amp`` resolved to on this device."""
        from unet_core.version import __version__

        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        old = self.manifest if self.continues and self.manifest else None
        manifest: dict[str, Any] = dict(old) if old else {}
        manifest.setdefault("run_id", uuid.uuid4().hex[:12])
        manifest.setdefault("created", now)
        model = dict(config.model)
        manifest.update(
            config_hash=_digest(config.model_dump(mode="json")),
            model={"name": model.get("name"), "config_hash": _digest(model)},
            unet_core_version=__version__,
            last_owner={"host": socket.gethostname(), "pid": os.getpid(), "started": now},
        )
        if precision is not None:
            manifest["precision"] = precision
        if resumed_from is not None:
            history = list(manifest.get("resumed_from") or [])
            history.append({"checkpoint": str(Path(resumed_from).resolve()), "at": now})
            manifest["resumed_from"] = history
        write_text_atomic(self.path / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        self.manifest = manifest
        self.started = True
        return manifest

    def release(self) -> None:
        """Drop the lock; before :meth:`start` also remove the (empty) folders the claim made.

        A new run that ends without a checkpoint (it failed on its data, say) withdraws its
        ``run.json``: it owns nothing worth keeping, so fixing the cause and running the same
        command again must not need ``--overwrite``.
        """
        try:
            if self.started and not self.continues and not _has_checkpoint(self.path):
                (self.path / MANIFEST).unlink(missing_ok=True)
        finally:
            self.lock.release()
            if not self.started:
                _remove_empty(self._created)


def claim(directory: Path, *, resume: str | None = None, overwrite: bool = False) -> RunFolder:
    """Lock ``directory`` for a run and make sure it may write there; see the module doc."""
    directory = Path(os.path.abspath(directory))
    created = _make_folder(directory)
    lock = FolderLock.acquire(directory)
    try:
        notes = _lock_note(directory, lock)
        continues = resume is not None and Path(resume).resolve().parent == directory.resolve()
        manifest = read_manifest(directory)
        if continues and overwrite:
            raise UsageError(
                f"--overwrite and --resume {resume} contradict each other: that checkpoint is "
                f"in the run folder {str(directory)!r}, so resuming continues that run in "
                "place. Drop --overwrite to continue it, or drop --resume to start over."
            )
        if not continues:
            found = owned_files(directory)
            if found and not overwrite:
                raise _owned_error(directory, found, manifest, resume)
            if found:
                notes.append(move_aside(directory, manifest))
                manifest = None
        notes += _remove_stale_temporaries(directory)
    except BaseException:
        lock.release()
        _remove_empty(created)
        raise
    return RunFolder(
        directory, lock, manifest=manifest, continues=continues, created=created, notes=notes
    )


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The folder's ``run.json`` as a dict (None when missing or unreadable)."""
    try:
        data = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def owned_files(directory: Path) -> list[str]:
    """Which of a run's marks (checkpoints, ``run.json``) the folder holds."""
    return [name for name in (MANIFEST, LAST, BEST) if (directory / name).exists()]


def move_aside(directory: Path, manifest: dict[str, Any] | None) -> str:
    """Move the run's files into a new ``previous-runs/<time>_<id>/``; returns the note."""
    base = directory / PREVIOUS_RUNS
    run_id = (manifest or {}).get("run_id")
    name = time.strftime("%Y-%m-%d_%H-%M-%S") + (f"_{run_id}" if run_id else "")
    moved: list[str] = []
    try:
        base.mkdir(exist_ok=True)
        target, n = base / name, 1
        while True:  # a fresh folder, never one that exists: nothing in it can be replaced
            try:
                target.mkdir()
                break
            except FileExistsError:
                n += 1
                target = base / f"{name}-{n}"
        for item in RUN_FILES:
            source = directory / item
            if source.exists() or source.is_symlink():
                os.rename(source, target / item)
                moved.append(item)
        fsync_path(target, directory=True)
        fsync_path(directory, directory=True)
    except OSError as exc:
        done = f"; already moved: {', '.join(moved)}" if moved else ""
        raise CheckpointError(
            f"Could not move the previous run's files out of {str(directory)!r} for "
            f"--overwrite: {exc.strerror or exc}{done}. Nothing was deleted and training was "
            "not started; fix the folder's permissions or choose another folder with "
            "`--set trainer.checkpoint_dir=...`."
        ) from None
    return f"--overwrite: moved the previous run's {', '.join(moved)} from {directory} to {target}."


def _owned_error(
    directory: Path, found: list[str], manifest: dict[str, Any] | None, resume: str | None
) -> CheckpointError:
    who = "another run"
    if manifest and manifest.get("run_id"):
        owner = manifest.get("last_owner") or {}
        who = f"run {manifest['run_id']} (last started {owner.get('started', '?')})"
    last = directory / LAST
    cont = (
        f"continue that run with `--resume {last}`"
        if last.exists()
        else "continue that run with `--resume` and one of its checkpoints"
    )
    source = (
        f" You asked to resume from {resume}, which is outside this folder: a resumed run "
        "continues into trainer.checkpoint_dir, so that folder must be free too."
        if resume
        else ""
    )
    return CheckpointError(
        f"The run folder {str(directory)!r} (trainer.checkpoint_dir) already belongs to {who}: "
        f"it holds {', '.join(found)}. A new run would overwrite them, so nothing was "
        f"started.{source} Either {cont}, or start over here with `--overwrite` (the old "
        f"run's files are moved to {directory / PREVIOUS_RUNS}/, never deleted), or choose "
        "another folder with `--set trainer.checkpoint_dir=...`."
    )


def _lock_note(directory: Path, lock: FolderLock) -> list[str]:
    if lock.previous is None:
        return []
    return [
        f"Took over the lock of {directory}: it was left by {describe_holder(lock.previous)}, "
        "which no longer runs (it was killed or crashed)."
    ]


def _remove_stale_temporaries(directory: Path) -> list[str]:
    """Delete our own temporaries there (we hold the lock, so no live run is writing them)."""
    stale = sorted({p for pattern in STALE_PATTERNS for p in directory.glob(pattern)})
    removed = []
    for path in stale:
        try:
            path.unlink()
            removed.append(path.name)
        except OSError:
            pass
    if not removed:
        return []
    return [
        f"Removed {len(removed)} temporary file(s) left in {directory} by an interrupted run: "
        f"{', '.join(removed)}."
    ]


def _make_folder(directory: Path) -> list[Path]:
    """Create ``directory`` (and parents); returns the folders made, deepest last."""
    missing = []
    probe = directory
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd_probe = directory / f".unet-write-test-{os.getpid()}"
        fd_probe.write_bytes(b"")
        fd_probe.unlink(missing_ok=True)
    except OSError as exc:
        _remove_empty(list(reversed(missing)))
        raise CheckpointError(
            f"Checkpoints cannot be written to {str(directory)!r} (trainer.checkpoint_dir): "
            f"{exc.strerror or exc}. Training was not started, so no time was lost. Choose a "
            "writable folder (e.g. `--set trainer.checkpoint_dir=runs/exp1`) or fix the "
            "folder's permissions."
        ) from None
    return list(reversed(missing))


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders a failed start made, deepest first, if they are still empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def emit(notes: list[str]) -> None:
    """Print run-folder notes on stderr (always: they say where a user's files went)."""
    for note in notes:
        print(f"Note: {note}", file=sys.stderr, flush=True)


def _has_checkpoint(directory: Path) -> bool:
    return any((directory / name).exists() for name in (LAST, BEST))
