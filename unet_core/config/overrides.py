"""``--set a.b.c=value`` overrides: the value is YAML, the schema types it afterwards."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from unet_core.errors import ConfigError


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"trainer.max_num_iterations=10"`` -> (["trainer", "max_num_iterations"], 10)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(
            f"Override {text!r} is not of the form key.path=value "
            "(e.g. --set trainer.max_num_iterations=10)."
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    quoted = raw.strip()[:1] in ("'", '"')  # a quoted value stays the string it says
    if isinstance(value, str) and not quoted:
        try:  # YAML 1.1 reads 1e-3 as a string; on a command line it means a number
            value = float(value)
        except ValueError:
            pass
    path: list[str | int] = [int(p) if p.isdigit() else p for p in key.split(".")]
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> list[tuple[str | int, ...]]:
    """Write each override into ``data`` (creating mappings on the way); returns their paths."""
    touched = []
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            nxt = path[i + 1]
            if isinstance(node, list) and isinstance(part, int):
                if part >= len(node):
                    raise ConfigError(f"Override {text!r}: index {part} is past the list's end.")
                node = node[part]
                continue
            if not isinstance(node, dict):
                where = ".".join(str(p) for p in path[:i])
                raise ConfigError(f"Override {text!r}: `{where}` is not a mapping.")
            if node.get(part) is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
        last = path[-1]
        if isinstance(node, list) and isinstance(last, int) and last < len(node):
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"Override {text!r}: cannot set `{'.'.join(map(str, path))}`.")
        touched.append(tuple(path))
    return touched
