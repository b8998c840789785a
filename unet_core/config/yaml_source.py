"""YAML text -> (data, line map), so every error can name the line it comes from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from unet_core.errors import ConfigError

YamlPath = tuple[str | int, ...]


class YamlSource:
    """Parsed YAML plus the 1-based line of every key and list item."""

    def __init__(self, data: Any, lines: dict[YamlPath, int], origin: str) -> None:
        self.data = data
        self.lines = lines
        self.origin = origin

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> YamlSource:
        p = Path(path)
        if not p.is_file():
            where = "is a folder" if p.is_dir() else "does not exist"
            raise ConfigError(f"Config file {str(p)!r} {where}; expected a YAML file.")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"Cannot read config file {str(p)!r}: {exc}.") from None
        return cls.from_text(text, str(p))

    @classmethod
    def from_text(cls, text: str, origin: str = "<string>") -> YamlSource:
        try:
            data = yaml.safe_load(text)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(
                f"{origin}{where}: not valid YAML ({problem}). Check indentation and quoting there."
            ) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{origin}: the top level must be a mapping of keys such as model, loss, "
                f"trainer, loaders; got a {type(data).__name__}."
            )
        lines: dict[YamlPath, int] = {}
        if node is not None:
            _collect_lines(node, (), lines)
        return cls(data, lines, origin)

    def line(self, path: YamlPath) -> int | None:
        """Line of ``path`` or of its closest existing parent."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None


def _collect_lines(node: yaml.Node, prefix: YamlPath, out: dict[YamlPath, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            _collect_lines(value, path, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            out[path] = item.start_mark.line + 1
            _collect_lines(item, path, out)
