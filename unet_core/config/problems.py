"""Collecting config problems and printing them with YAML path, line and suggestion."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from unet_core.config.yaml_source import YamlPath, YamlSource
from unet_core.errors import ConfigError
from unet_core.registry import suggest


@dataclass
class Problem:
    path: YamlPath
    message: str
    #: The exception behind it (a plugin that failed to import), which ``--debug`` shows.
    cause: BaseException | None = field(default=None, compare=False, repr=False)


def dotted(path: YamlPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The nested Pydantic model that owns the last key of ``loc`` (for suggestions)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple):
        for arg in typing.get_args(annotation):
            found = _inner_model(arg)
            if found is not None:
                return found
    return None


def unknown_key(key: str, what: str, valid: list[str]) -> str:
    """The message for a key the component does not take, with the closest valid one."""
    return f"unknown key `{key}`{what}{suggest(key, valid)}; valid keys: {', '.join(valid)}"


def from_validation_error(
    exc: ValidationError, prefix: YamlPath, model: type[BaseModel], what: str = ""
) -> list[Problem]:
    """Pydantic errors -> problems with the key, what was expected and a suggestion."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not str(p).startswith("function-"))
        path = (*prefix, *loc)
        kind = err["type"]
        owner = model_at(model, loc) if loc else model
        valid = sorted(owner.model_fields) if owner is not None else []
        if kind == "extra_forbidden":
            msg = unknown_key(str(loc[-1]) if loc else "?", what, valid)
        elif kind == "missing":
            key = str(loc[-1]) if loc else "?"
            field = owner.model_fields.get(key) if owner is not None else None
            desc = f" ({field.description})" if field is not None and field.description else ""
            msg = f"missing required key `{key}`{what}{desc}"
        elif not loc:  # a model validator's own sentence about the whole section
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{what.removeprefix(' for ')}: {text}" if what else text
        else:
            shown = repr(err.get("input"))
            shown = shown if len(shown) < 60 else shown[:57] + "..."
            text = err["msg"].removeprefix("Value error, ")
            msg = f"{text}{what}; got {shown}"
        problems.append(Problem(path, msg))
    return problems


def raise_problems(problems: list[Problem], source: YamlSource, overridden: set[YamlPath]) -> None:
    """One ConfigError listing every problem, each with its YAML path and line."""
    if not problems:
        return
    rows = []
    for p in problems:
        line = source.line(p.path)
        if any(p.path[: len(o)] == o for o in overridden):
            where = " (from the command line: --set or an option)"
        elif line is not None:
            where = f" (line {line})"
        else:
            where = ""
        rows.append(f"  - {dotted(p.path)}{where}: {p.message}")
    noun = "problem" if len(rows) == 1 else "problems"
    error = ConfigError(f"{source.origin}: {len(rows)} {noun} found:\n" + "\n".join(rows))
    cause = next((p.cause for p in problems if p.cause is not None), None)
    raise error from cause
