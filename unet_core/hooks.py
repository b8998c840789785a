"""Lifecycle hooks (pluggy). Plugins implement them in modules named by ``unet.hooks``.

Example, in a plugin package::

    from unet_core.hooks import hookimpl

    @hookimpl
    def unet_after_validation(trainer, iteration, score):
        print(iteration, score)

and in its ``pyproject.toml``: ``[project.entry-points."unet.hooks"] mine = "my_pkg.hooks"``.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pluggy

from unet_core.discovery import hook_modules
from unet_core.plugin_import import ImportFailure, import_object

PROJECT = "unet"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class HookSpecs:
    """Events the engines announce. Every argument is passed by keyword."""

    @hookspec
    def unet_train_start(self, trainer: Any, config: Any) -> None:
        """Training is about to run its first iteration (after any resume)."""

    @hookspec
    def unet_after_iteration(self, trainer: Any, iteration: int, loss: float) -> None:
        """One optimisation step finished."""

    @hookspec
    def unet_after_validation(
        self, trainer: Any, iteration: int, score: float, loss: float
    ) -> None:
        """A validation pass finished with ``score`` (the eval metric) and mean ``loss``."""

    @hookspec
    def unet_checkpoint_saved(self, trainer: Any, path: str, is_best: bool) -> None:
        """A checkpoint file was written completely (atomically) to ``path``."""

    @hookspec
    def unet_train_end(self, trainer: Any, iteration: int, best_score: float | None) -> None:
        """Training stopped (iteration budget, epoch budget or learning-rate floor)."""

    @hookspec
    def unet_prediction_written(self, path: str, datasets: list[str]) -> None:
        """A prediction file was completed and renamed into place."""


@functools.lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager with every installed ``unet.hooks`` module registered."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(HookSpecs)
    for name, dist, ep in hook_modules():
        try:
            pm.register(import_object(ep.value), name=f"{dist}:{name}")
        except ImportFailure as failure:  # a broken hook module must not stop training
            reason = failure.reason
            warnings.warn(f"skipping broken hook module {name!r} ({dist}): {reason}", stacklevel=2)
        except Exception as exc:  # noqa: BLE001 - pluggy refused it (e.g. unknown hook)
            warnings.warn(f"skipping broken hook module {name!r} ({dist}): {exc}", stacklevel=2)
    return pm
