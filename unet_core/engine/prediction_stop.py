"""SIGINT/SIGTERM during prediction: stop between patches or blocks, leave nothing behind.

The first signal only sets a flag; the prediction code asks :func:`raise_if_stopped` between
patches and blocks, and the exception unwinds through the writers, which remove their
unfinished and scratch files. Finished outputs stay. A second signal aborts at once (the same
clean-up still runs). Without this, SIGTERM's default action would kill the process in the
middle of a write and leave its temporary files behind.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from unet_core.engine.interrupts import InterruptGuard
from unet_core.errors import UserError


class PredictionInterrupted(UserError):
    """Prediction stopped on a signal; exit code 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class PredictionGuard(InterruptGuard):
    """Records the first signal; a second one raises KeyboardInterrupt at once."""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: stopping prediction after this patch "
            "and removing unfinished files (a second signal aborts at once).",
            file=sys.stderr,
            flush=True,
        )


_ACTIVE: list[PredictionGuard] = []


@contextmanager
def stop_on_signals() -> Iterator[PredictionGuard]:
    """Install the guard for the block (main thread only; elsewhere it never fires)."""
    guard = PredictionGuard()
    with guard:
        _ACTIVE.append(guard)
        try:
            yield guard
        finally:
            _ACTIVE.remove(guard)


def raise_if_stopped() -> None:
    """Raise :class:`PredictionInterrupted` if a signal arrived; call between units of work."""
    if not _ACTIVE or not _ACTIVE[-1].requested:
        return
    guard = _ACTIVE[-1]
    assert guard.signum is not None
    raise PredictionInterrupted(
        f"Prediction stopped on {guard.name}. Outputs finished before the signal are complete; "
        "the file being written was removed (nothing half-written is left under an output "
        "name). Run the same command again to predict the rest (finished outputs are "
        "refused unless --overwrite: move them or predict only the remaining files).",
        guard.signum,
    )
