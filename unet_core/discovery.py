"""Entry points -> registry records, without importing the plugin modules.

Reading ``importlib.metadata`` is enough to list every component with its distribution and
version; a module is imported only when its component is used. A malformed entry point, a
missing module or two distributions claiming one name become a *broken* record with a
one-line reason, so one bad package never hides the others.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from unet_core.kinds import HOOKS_GROUP, KINDS, singular
from unet_core.plugin_import import ImportFailure, import_object


@dataclass
class Record:
    """One component as known to the registry."""

    kind: str
    name: str
    target: str  # "module:attribute", or "<registered>" for objects given to register()
    distribution: str = "-"
    version: str = "-"
    error: str | None = None  # one-line reason when broken
    cause: BaseException | None = field(default=None, repr=False)
    obj: Any = field(default=None, repr=False)

    @property
    def loaded(self) -> bool:
        return self.obj is not None

    @property
    def status(self) -> str:
        return "ok" if self.error is None else "broken"


def _dist_of(ep: metadata.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "-", "-"
    return dist.metadata["Name"] or "-", dist.version or "-"


def _split_target(value: str) -> tuple[str, str] | None:
    module, sep, attr = value.partition(":")
    module, attr = module.strip(), attr.strip()
    if not sep or not module or not attr or " " in module or "[" in attr:
        return None
    return module, attr


@functools.lru_cache(maxsize=512)
def module_exists(module: str) -> bool:
    """Whether ``module`` can be found on disk, importing nothing (not even its parents)."""
    return module_file(module) is not None


def module_file(module: str) -> str | None:
    """The file ``module`` would be imported from (``__init__.py`` for a package), importing
    nothing, not even its parents; None if it is not on disk."""
    parts = module.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if len(parts) == 1:
        return spec.origin
    locations = list(spec.submodule_search_locations or [])
    for i, part in enumerate(parts[1:], start=1):
        if not locations:
            return None
        found = []
        last = i == len(parts) - 1
        for loc in locations:
            pkg = os.path.join(loc, part)
            init = os.path.join(pkg, "__init__.py")
            if os.path.isfile(init):
                if last:
                    return init
                found.append(pkg)
            elif os.path.isdir(pkg) and not last:
                found.append(pkg)
            elif last and os.path.isfile(pkg + ".py"):
                return pkg + ".py"
            elif last:
                binary = [f for f in _listdir(loc) if f.startswith(part + ".")]
                binary = [f for f in binary if f.endswith((".so", ".pyd"))]
                if binary:
                    return os.path.join(loc, binary[0])
        if not found:
            return None
        locations = found
    return None


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def scan() -> dict[str, dict[str, Record]]:
    """Read every entry-point group into records, flagging malformed and conflicting ones."""
    records: dict[str, dict[str, Record]] = {kind: {} for kind in KINDS}
    everything = metadata.entry_points()  # one pass over the installed distributions
    for kind, group in KINDS.items():
        seen: dict[str, Record] = records[kind]
        for ep in everything.select(group=group):
            dist, version = _dist_of(ep)
            rec = Record(kind, ep.name, ep.value, dist, version)
            if _split_target(ep.value) is None:
                rec.error = (
                    f"malformed entry point {ep.name} = {ep.value!r} (expected 'module:attr')"
                )
            elif not module_exists(ep.value.partition(":")[0]):
                rec.error = f"module {ep.value.partition(':')[0]!r} not found"
            previous = seen.get(ep.name)
            if previous is not None:
                if (previous.distribution, previous.target) == (dist, ep.value):
                    continue  # the same distribution seen twice on sys.path
                previous.error = rec.error = (
                    f"{singular(kind)} {ep.name!r} is registered by two distributions: "
                    f"{previous.distribution} ({previous.target}) and {dist} ({ep.value}); "
                    "uninstall one of them"
                )
                continue
            seen[ep.name] = rec
    return records


def load(rec: Record) -> Any:
    """Import the record's object once, turning any failure into ``rec.error``.

    The object must have a usable ``Config``; unless it is a ``Deferred`` (whose implementation
    is checked when it is resolved) it must also meet its kind's contract.
    """
    if rec.obj is not None or rec.error is not None:
        return rec.obj
    try:
        obj = import_object(rec.target)
    except ImportFailure as failure:
        rec.error, rec.cause = failure.reason, failure.cause
        return None
    problem = config_problem(obj) or contract_problem(rec.kind, obj)
    if problem is not None:
        rec.error = problem
        return None
    rec.obj = obj
    return obj


def contract_problem(kind: str, obj: Any) -> str | None:
    """Why ``obj`` does not meet ``kind``'s contract, or None (a Deferred is checked later)."""
    from unet_core.contracts import problem_line
    from unet_core.interfaces import Deferred

    return None if isinstance(obj, Deferred) else problem_line(kind, obj)


def config_problem(obj: Any) -> str | None:
    """Why ``obj`` cannot serve as a component, or None if its ``Config`` is usable."""
    from pydantic import BaseModel

    config = getattr(obj, "Config", None)
    if not (isinstance(config, type) and issubclass(config, BaseModel)):
        return f"{getattr(obj, '__name__', obj)!r} has no Pydantic v2 'Config' model"
    try:
        config.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - a schema that cannot be exported is broken
        return f"its Config schema cannot be built: {type(exc).__name__}: {exc}".splitlines()[0]
    return None


def hook_modules() -> list[tuple[str, str, Any]]:
    """The ``unet.hooks`` entry points as (name, distribution, entry point), not yet imported."""
    return [(ep.name, _dist_of(ep)[0], ep) for ep in metadata.entry_points(group=HOOKS_GROUP)]


def unknown_groups() -> list[str]:
    """One line per entry-point group that looks meant for unet-core (``unet.*``) but is none
    it reads, e.g. ``unet.loss``: its components would never show up, without a word."""
    import difflib

    known = {*KINDS.values(), HOOKS_GROUP}
    lines = []
    for dist in metadata.distributions():
        groups = {ep.group for ep in dist.entry_points if ep.group.startswith("unet.")}
        for group in sorted(groups - known):
            close = difflib.get_close_matches(group, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            name = dist.metadata["Name"]
            lines.append(
                f"{name} declares entry points in the group {group!r}, which unet-core does not "
                f"read{hint}; groups: {', '.join(sorted(known))}."
            )
    return lines
