"""Lifecycle hooks: append one JSON line per event to ``$UNET_EXAMPLE_HOOK_LOG``.

Nothing is written when the variable is unset, so installing the plugin changes no run.

Registered under the ``unet.hooks`` entry-point group; unet-core's pluggy manager calls these
with keyword arguments, and a hook may take any subset of the arguments its spec declares.
"""

from __future__ import annotations

import json
import os
from typing import Any

from unet_core.hooks import hookimpl

LOG_ENV = "UNET_EXAMPLE_HOOK_LOG"


def _append(event: str, **fields: Any) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"event": event, **fields}) + "\n")


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


@hookimpl
def unet_after_validation(iteration: int, score: float, loss: float) -> None:
    """Record every validation score."""
    _append("after_validation", iteration=int(iteration), score=_number(score), loss=_number(loss))


@hookimpl
def unet_checkpoint_saved(path: str, is_best: bool) -> None:
    """Record every checkpoint file once it is completely written."""
    _append("checkpoint_saved", file=os.path.basename(path), is_best=bool(is_best))


@hookimpl
def unet_train_end(iteration: int, best_score: float | None) -> None:
    """Record how training ended."""
    _append("train_end", iteration=int(iteration), best_score=_number(best_score))
