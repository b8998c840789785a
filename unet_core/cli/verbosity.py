"""``unet -v/-q``: what the engines' log lines and progress reporters show.

Without a flag the info lines of unet-core and of plugins (loggers ``unet_core``,
``unet_plugins``, ``unet.*``) reach stderr, so a user sees what a long command is doing;
``-v`` adds debug lines, ``-vv`` every library's; ``-q`` shows only warnings and errors and
no progress.
"""

from __future__ import annotations

import logging
import sys
from contextlib import AbstractContextManager

import click

#: Loggers whose info lines a user sees by default.
OUR_LOGGERS = ("unet_core", "unet_plugins", "unet")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.capitalize()}: {text}"
        return text


def configure(verbose: int, quiet: bool) -> logging.Handler:
    """Install the CLI's log handler; returns it (the caller removes it at the end)."""
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    for name in OUR_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = verbose > 1  # -vv: the root logger's handlers see them as well
    if verbose > 1:
        logging.getLogger().setLevel(logging.DEBUG)
        logging.getLogger().addHandler(handler)
    return handler


def remove(handler: logging.Handler) -> None:
    """Undo :func:`configure` (the in-process runner calls the CLI many times)."""
    for name in (*OUR_LOGGERS, ""):
        logger = logging.getLogger(name or None)
        logger.removeHandler(handler)
        if name:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True


def progress_mode() -> str:
    """``none`` under ``unet -q``, else ``auto`` (bar on a terminal, lines otherwise)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    quiet = bool(root is not None and isinstance(root.obj, dict) and root.obj.get("quiet"))
    return "none" if quiet else "auto"


def command_progress(what: str) -> AbstractContextManager[object]:
    """The progress reporter of a long command, active for the ``with`` block."""
    from unet_core.engine.work_progress import activated, make_work_progress

    return activated(make_work_progress(progress_mode(), what))
