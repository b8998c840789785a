"""SIGINT/SIGTERM during training: finish the current step, save a checkpoint, exit non-zero.

A first signal only sets a flag that the training loop reads at the end of each iteration (and
between validation batches); a second SIGINT aborts at once. Handlers are installed only in
the main thread and restored afterwards, so library use from threads is unaffected.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

from unet_core.errors import TrainingError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(TrainingError):
    """Training stopped on a signal after saving a checkpoint; exit code 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class InterruptGuard:
    """Context manager recording the first SIGINT/SIGTERM instead of dying mid-write."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: saving a checkpoint after this "
            "iteration, then stopping (Ctrl-C again aborts at once).",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
