"""What a person watching training sees: a rich live bar on a terminal, plain lines elsewhere.

Both show iteration/total, iterations per second, ETA, the current loss and the last validation
score. ``trainer.progress``: ``auto`` (bar on a TTY, lines otherwise), ``bar``, ``lines``,
``none``. Only rank 0 reports under DDP.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from typing import IO, Any


class Progress:
    """Silent base class; also the ``none`` mode and the reporter of non-zero ranks."""

    def __init__(self) -> None:
        self.total = 0
        self.iteration = 0
        self.loss: float | None = None
        self.score: float | None = None
        self._times: deque[tuple[float, int]] = deque(maxlen=50)

    def start(self, total: int, done: int) -> None:
        self.total, self.iteration = total, done
        self._times.append((time.perf_counter(), done))

    def step(self, iteration: int, loss: float) -> None:
        self.iteration, self.loss = iteration, loss
        self._times.append((time.perf_counter(), iteration))

    def validated(self, iteration: int, score: float, loss: float, is_best: bool) -> None:
        self.score = score

    def message(self, text: str) -> None:
        """A one-off line (resume, checkpoint, stop reason)."""

    def close(self) -> None:
        """Stop the display (idempotent)."""

    # -- shared numbers ------------------------------------------------------------------------
    @property
    def rate(self) -> float | None:
        """Iterations per second over the recent window."""
        if len(self._times) < 2:
            return None
        (t0, i0), (t1, i1) = self._times[0], self._times[-1]
        return (i1 - i0) / (t1 - t0) if t1 > t0 and i1 > i0 else None

    @property
    def eta(self) -> str:
        rate = self.rate
        if not rate:
            return "?"
        seconds = int(max(self.total - self.iteration, 0) / rate)
        hours, rest = divmod(seconds, 3600)
        return (
            f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
            if hours
            else f"{rest // 60}:{rest % 60:02d}"
        )

    def summary(self) -> str:
        rate = self.rate
        parts = [
            f"iteration {self.iteration}/{self.total}",
            f"{rate:.2f} it/s" if rate else "- it/s",
            f"ETA {self.eta}",
        ]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.score is not None:
            parts.append(f"val score {self.score:.4g}")
        return " | ".join(parts)


class LineProgress(Progress):
    """One plain line every ``every`` iterations and after each validation (logs, CI)."""

    def __init__(self, every: int, stream: IO[str] | None = None) -> None:
        super().__init__()
        self.every = max(1, every)
        self.stream = stream

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stdout
        print(text, file=stream, flush=True)

    def step(self, iteration: int, loss: float) -> None:
        super().step(iteration, loss)
        if iteration % self.every == 0 or iteration == self.total:
            self._print(self.summary())

    def validated(self, iteration: int, score: float, loss: float, is_best: bool) -> None:
        super().validated(iteration, score, loss, is_best)
        best = " (best so far)" if is_best else ""
        self._print(
            f"validation at iteration {iteration}: score {score:.4g}, loss {loss:.4g}{best}"
        )

    def message(self, text: str) -> None:
        self._print(text)


class BarProgress(Progress):
    """A rich live bar, refreshed a few times per second."""

    def __init__(self) -> None:
        super().__init__()
        from rich.progress import BarColumn, TextColumn
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"),
            transient=False,
        )
        self._task: Any = None

    def start(self, total: int, done: int) -> None:
        super().start(total, done)
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, completed=done, stats="")

    def _refresh(self) -> None:
        if self._task is not None:
            stats = self.summary().split(" | ", 1)[1]
            self._bar.update(self._task, completed=self.iteration, stats=stats)

    def step(self, iteration: int, loss: float) -> None:
        super().step(iteration, loss)
        self._refresh()

    def validated(self, iteration: int, score: float, loss: float, is_best: bool) -> None:
        super().validated(iteration, score, loss, is_best)
        best = " (best)" if is_best else ""
        self._bar.console.print(
            f"validation @ {iteration}: score {score:.4g}, loss {loss:.4g}{best}"
        )
        self._refresh()

    def message(self, text: str) -> None:
        self._bar.console.print(text)

    def close(self) -> None:
        if self._task is not None:
            self._bar.stop()
            self._task = None


def make_progress(mode: str, *, every: int, is_main: bool = True) -> Progress:
    """The reporter for ``trainer.progress`` (silent on ranks other than 0)."""
    if not is_main or mode == "none":
        return Progress()
    if mode == "bar" or (mode == "auto" and sys.stdout.isatty()):
        return BarProgress()
    return LineProgress(every)
