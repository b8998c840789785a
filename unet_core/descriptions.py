"""One-line descriptions of components, read from their source files without importing them.

``unet plugins list`` must stay torch-free and fast, so it cannot import a plugin to ask for its
docstring. The docstring is read with :mod:`ast` from the file the entry point's module would be
imported from. An entry point often names a light stand-in (a ``Deferred`` built in a specs
module) rather than the class itself; then the class of the same name in a sibling module of the
same package is used, and failing that its ``<Name>Config`` class. Nothing found: an empty string.
"""

from __future__ import annotations

import ast
import functools
import os

from unet_core.discovery import module_file

#: longest description shown; longer first sentences are cut with an ellipsis
MAX_LENGTH = 90


def describe(target: str) -> str:
    """The first sentence of the docstring of ``module:attribute``, or ''."""
    module, _, attr = target.partition(":")
    path = module_file(module) if module and attr else None
    if path is None or not path.endswith(".py"):
        return ""
    siblings = _python_files(os.path.dirname(path))
    for name, files in ((attr, [path]), (attr, siblings), (attr + "Config", [path, *siblings])):
        for file in files:
            doc = _docstring(file, name)
            if doc:
                return doc
    return ""


def first_sentence(doc: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, at most MAX_LENGTH."""
    paragraph = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "`")
    sentence, depth = paragraph, 0
    for i, char in enumerate(paragraph):  # ". " outside brackets, before a capital letter
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "." and depth == 0 and paragraph[i + 1 : i + 3].startswith(" "):
            following = paragraph[i + 2 : i + 3]
            if following.isupper() or following in "`*":
                sentence = paragraph[: i + 1]
                break
    return sentence if len(sentence) <= MAX_LENGTH else sentence[: MAX_LENGTH - 1] + "…"


@functools.cache
def _python_files(folder: str) -> list[str]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if n.endswith(".py")]


@functools.cache
def _source(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return ""


def _docstring(path: str, name: str) -> str | None:
    """First sentence of the docstring of the top-level class/function ``name`` in ``path``.

    Only the definition's header and docstring are parsed (a whole plugin module takes ~100
    times as long): from its ``class``/``def`` line to the end of the first triple-quoted string.
    """
    text = _source(path)
    for keyword in ("class", "def", "async def"):
        start = _definition(text, f"{keyword} {name}")
        if start >= 0:
            break
    else:
        return None
    quote = min((i for i in (text.find('"""', start), text.find("'''", start)) if i >= 0),
                default=-1)  # fmt: skip
    end = text.find(text[quote : quote + 3], quote + 3) if quote >= 0 else -1
    if end < 0:
        return None
    try:
        tree = ast.parse(text[start : end + 3])
    except (SyntaxError, ValueError):
        return None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    doc = ast.get_docstring(node)
    return first_sentence(doc) if doc else None


def _definition(text: str, head: str) -> int:
    """Where the top-level line starting with ``head`` (then '(' or ':') is, or -1."""
    at = -1
    while True:
        at = text.find(head, at + 1)
        if at < 0:
            return -1
        follows = text[at + len(head) : at + len(head) + 1]
        if (at == 0 or text[at - 1] == "\n") and follows in ("(", ":"):
            return at
