"""Progress over the blocks of a distributed prediction: a rich bar on a terminal, plain
lines (about every 10 %) elsewhere, so logs of batch jobs stay readable."""

from __future__ import annotations

import sys
from typing import Any


def track(futures: list[Any], *, total: int, done: int, what: str) -> None:
    """Wait for every future (re-raising the first error) while showing blocks done/total."""
    from distributed import as_completed

    if sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=False,
        ) as bar:
            task = bar.add_task(f"{what} blocks", total=total, completed=done)
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                future.result()
                bar.advance(task)
        return
    step = max(1, total // 10)
    count = done
    for future in as_completed(futures):  # type: ignore[no-untyped-call]
        future.result()
        count += 1
        if count % step == 0 or count == total:
            print(f"{what}: {count}/{total} blocks", file=sys.stderr, flush=True)
