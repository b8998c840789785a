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
            raise ConfigError(yaml_error_message(exc, text, origin)) from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(
                f"{origin}: the top level must be a mapping of keys such as model, loss, "
                f"trainer, loaders; got a {type(data).__name__}."
            )
        lines: dict[YamlPath, int] = {}
        if node is not None:
            _collect_lines(node, (), lines, origin)
        return cls(data, lines, origin)

    def line(self, path: YamlPath) -> int | None:
        """Line of ``path`` or of its closest existing parent."""
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                return self.lines[path[:n]]
        return None


def parse_yaml(text: str, origin: str) -> Any:
    """``yaml.safe_load`` whose syntax errors are one paragraph naming ``origin`` and the line
    (a ConfigError), for YAML given on the command line or in small side files."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error_message(exc, text, origin)) from None


def yaml_error_message(exc: yaml.YAMLError, text: str, origin: str) -> str:
    """Where YAML parsing failed and where the construct it was reading opened (often the
    real mistake: an unclosed bracket or quote), each with its line of the file."""
    lines = text.splitlines()

    def shown(mark: Any) -> str:
        number = mark.line + 1
        if mark.line >= len(lines):
            return f"line {number} (the end of the file)"
        body = lines[mark.line].strip()
        return f"line {number}: `{body}`" if body else f"line {number} (an empty line)"

    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    where = f", line {mark.line + 1}" if mark is not None else ""
    out = f"{origin}{where}: not valid YAML: {problem}"
    if mark is not None:
        out += f" at {shown(mark)}"
    first = mark.line if mark is not None else 0
    if context_mark is not None:
        out += f"; {context or 'the construct'} that opened at {shown(context_mark)}"
        first = min(first, context_mark.line)
    return (
        f"{out}. Check the indentation, quotes and brackets from line {first + 1} on (a "
        "bracket or quote opened there and never closed is the usual cause)."
    )


def _collect_lines(
    node: yaml.Node, prefix: YamlPath, out: dict[YamlPath, int], origin: str
) -> None:
    """The line of every key and list item; a key written twice in one mapping is refused:
    YAML keeps the second without a word, so the first one's settings would be lost."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            line = key.start_mark.line + 1
            if path in out and key.tag != "tag:yaml.org,2002:merge":
                raise ConfigError(
                    f"{origin}, line {line}: the key {'.'.join(map(str, path))!r} appears twice "
                    f"(lines {out[path]} and {line}); YAML would keep only the second and drop "
                    "the first's settings. Keep one of them (merge two sections into one)."
                )
            out[path] = line
            _collect_lines(value, path, out, origin)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            out[path] = item.start_mark.line + 1
            _collect_lines(item, path, out, origin)
