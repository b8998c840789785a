"""Progress of long commands over files and their units (patches, blocks): a rich bar on a
terminal, a plain line now and then elsewhere (logs, CI), nothing under ``unet -q``.

The CLI activates one reporter for a command (:func:`activated`); the engines report to
whatever is active (:func:`current`), so library callers and plugins see no output unless
they ask for it. Lines go to stderr: stdout keeps the command's result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Seconds between two plain lines within one file (besides its start and end).
LINE_EVERY_S = 10.0
#: A plain line is also written each time this fraction of a file's units is done.
LINE_FRACTION = 0.25


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{rest // 60}:{rest % 60:02d}"


class WorkProgress:
    """Silent reporter: the default, and ``-q``. Subclasses show what it counts."""

    def __init__(self, what: str = "work") -> None:
        self.what = what
        self.files_total = 0
        self.files_done = 0
        self.name = ""
        self.unit = "patches"
        self.total: int | None = None
        self.done = 0
        self._started = time.perf_counter()

    def begin(self, what: str, files: int) -> None:
        """A run over ``files`` files (or items) starts."""
        self.what, self.files_total, self.files_done = what, files, 0

    def begin_file(self, name: str, total: int | None, unit: str = "patches") -> None:
        """One file with ``total`` units (None: unknown) starts."""
        self.name, self.total, self.unit, self.done = name, total, unit, 0
        self._started = time.perf_counter()

    def advance(self, n: int = 1) -> None:
        """``n`` more units of the current file are done."""
        self.done += n

    def end_file(self) -> None:
        """The current file is finished."""
        self.files_done += 1

    def close(self) -> None:
        """Stop the display (idempotent)."""

    # -- shared numbers ------------------------------------------------------------------------
    @property
    def rate(self) -> float | None:
        elapsed = time.perf_counter() - self._started
        return self.done / elapsed if elapsed > 0 and self.done else None

    def summary(self, eta: bool = True) -> str:
        rate = self.rate
        of = f"/{self.total}" if self.total else ""
        parts = [f"{self.done}{of} {self.unit}", f"{rate:.2f} {self.unit}/s" if rate else ""]
        if eta and rate and self.total:
            parts.append(f"ETA {_clock((self.total - self.done) / rate)}")
        return " | ".join(p for p in parts if p)

    def _file_label(self) -> str:
        count = f"file {self.files_done + 1}/{self.files_total}" if self.files_total else "file"
        return f"{self.what}: {count} {self.name}"


class LineProgress(WorkProgress):
    """A plain line at each file's start and end, and every ``LINE_EVERY_S`` seconds or
    ``LINE_FRACTION`` of a file in between."""

    def __init__(self, what: str = "work", stream: Any = None) -> None:
        super().__init__(what)
        self.stream = stream
        self._last_line = 0.0
        self._next_mark = 0

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def begin_file(self, name: str, total: int | None, unit: str = "patches") -> None:
        super().begin_file(name, total, unit)
        self._last_line = time.perf_counter()
        self._next_mark = max(1, int((total or 0) * LINE_FRACTION))
        size = f" ({total} {unit})" if total else ""
        self._print(f"{self._file_label()}{size}")

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        now = time.perf_counter()
        if self.done >= self._next_mark or now - self._last_line >= LINE_EVERY_S:
            if self.total is None or self.done < self.total:
                self._print(f"{self.what}: {self.name}: {self.summary()}")
            self._last_line = now
            step = max(1, int((self.total or 0) * LINE_FRACTION))
            while self._next_mark <= self.done:
                self._next_mark += step

    def end_file(self) -> None:
        seconds = time.perf_counter() - self._started
        self._print(f"{self._file_label()} done: {self.summary(eta=False)} in {seconds:.1f} s")
        super().end_file()


class BarProgress(WorkProgress):
    """Two rich bars on stderr: files, and the units of the current file (rate, ETA)."""

    def __init__(self, what: str = "work") -> None:
        super().__init__(what)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._files: Any = None
        self._units: Any = None

    def begin(self, what: str, files: int) -> None:
        super().begin(what, files)
        self._bar.start()
        self._files = self._bar.add_task(f"{what} files", total=files, rate="")

    def begin_file(self, name: str, total: int | None, unit: str = "patches") -> None:
        super().begin_file(name, total, unit)
        if self._files is None:
            self.begin(self.what, 0)
        if self._units is not None:
            self._bar.remove_task(self._units)
        self._units = self._bar.add_task(f"{name} {unit}", total=total, rate="")

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        if self._units is not None:
            rate = self.rate
            shown = f"{rate:.1f} {self.unit}/s" if rate else ""
            self._bar.update(self._units, completed=self.done, rate=shown)

    def end_file(self) -> None:
        super().end_file()
        if self._files is not None:
            self._bar.update(self._files, completed=self.files_done)

    def close(self) -> None:
        if self._files is not None:
            self._bar.stop()
            self._files = self._units = None


_current: WorkProgress = WorkProgress()


def current() -> WorkProgress:
    """The reporter of the running command (silent unless the CLI activated one)."""
    return _current


def make_work_progress(mode: str, what: str = "work") -> WorkProgress:
    """``auto`` (bar on a terminal, lines otherwise), ``bar``, ``lines`` or ``none``."""
    if mode == "none":
        return WorkProgress(what)
    if mode == "bar" or (mode == "auto" and sys.stderr.isatty()):
        return BarProgress(what)
    return LineProgress(what)


@contextmanager
def activated(progress: WorkProgress) -> Iterator[WorkProgress]:
    """Make ``progress`` the current reporter for the block (closed at its end)."""
    global _current
    previous, _current = _current, progress
    try:
        yield progress
    finally:
        progress.close()
        _current = previous
