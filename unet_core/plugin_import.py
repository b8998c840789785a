"""Importing a plugin's object so that no failure of the plugin ends the process.

Separate from discovery so that :class:`~unet_core.interfaces.Deferred` can resolve its target
without the interfaces depending on discovery (which depends on the interfaces).
"""

from __future__ import annotations

import importlib
from typing import Any


class ImportFailure(Exception):
    """Importing a plugin's object failed; ``reason`` is the one-line report."""

    def __init__(self, reason: str, cause: BaseException) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


def import_object(target: str) -> Any:
    """Import ``module`` or ``module:attr.path``; any failure becomes :class:`ImportFailure`.

    "Any" includes ``sys.exit()`` and other ``BaseException``s a plugin raises at import: one
    plugin must not end the process (only Ctrl-C, ``KeyboardInterrupt``, goes through).
    """
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name.strip())
        for part in filter(None, attr.strip().split(".")):
            obj = getattr(obj, part)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - a plugin's failure is reported, not fatal
        raise ImportFailure(failure_reason(target, exc), exc) from exc
    return obj


def failure_reason(target: str, exc: BaseException) -> str:
    """One line: what failed and why (``sys.exit(n)`` is named as such)."""
    if isinstance(exc, SystemExit):
        why = f"the module called sys.exit({exc.code!r})"
    else:
        why = f"{type(exc).__name__}: {exc}"
    return f"import of {target} failed: {why}".splitlines()[0]
