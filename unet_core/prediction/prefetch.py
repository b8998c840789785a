"""Read and normalise the next batches in a thread while the model computes this one.

A forward pass releases the GIL for its whole duration, so one background thread that pulls
batches from the loader (HDF5 reads, transforms, collation) hides that work behind compute
without the start-up cost and memory of a loader worker process. The queue is bounded, so
at most ``depth`` batches wait in memory; an error in the thread is raised in the consumer,
and a consumer that stops early (an error, a signal) stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
#: Batches read ahead: one in the model, one ready, one being read.
DEPTH = 2
_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(items: Iterable[T], depth: int = DEPTH) -> Iterator[T]:
    """``items`` in order, produced by a daemon thread at most ``depth`` ahead."""
    q: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if not _put(q, item, stop):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            _put(q, _Failure(exc), stop)
            return
        _put(q, _DONE, stop)

    thread = threading.Thread(target=produce, name="unet-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


def _put(q: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless the consumer has gone; False when it has."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
