"""The user documentation stays true: the config reference is regenerated from the schemas and
compared with the committed file, and the documentation index links only to files that exist."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _generator() -> ModuleType:
    path = DOCS / "generate_config_reference.py"
    spec = importlib.util.spec_from_file_location("generate_config_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_up_to_date():
    expected = _generator().render()
    committed = (DOCS / "config-reference.md").read_text()
    assert committed == expected, (
        "docs/config-reference.md is out of date with the schemas; regenerate it with "
        "`python docs/generate_config_reference.py` and commit the result."
    )


def test_config_reference_covers_every_builtin_component():
    from unet_core import registry
    from unet_core.kinds import KINDS

    text = (DOCS / "config-reference.md").read_text()
    for kind in KINDS:
        for rec in registry.records(kind):
            if rec.distribution == "unet-core":
                assert f"#### {rec.name}\n" in text, (kind, rec.name)


def test_type_and_default_rendering():
    gen = _generator()
    from typing import Literal

    assert gen.type_name(int | None) == "int | null"
    assert gen.type_name(list[int]) == "list[int]"
    assert gen.type_name(Literal["min", "max"]) == '"min" | "max"'
    assert gen.type_name(tuple[int, ...]) == "tuple[int, ...]"
    assert gen.cell("a | b\nc") == "a \\| b c"

    from pydantic import BaseModel, Field

    class Example(BaseModel):
        required: int = Field(..., description="needed")
        listed: list[int] = Field(default_factory=lambda: [1, 2])
        flag: bool = False

    rows = gen.field_rows(Example)
    assert rows[0] == "| `required` | `int` | `(required)` | needed |"
    assert rows[1] == "| `listed` | `list[int]` | `[1, 2]` |  |"
    assert rows[2] == "| `flag` | `bool` | `false` |  |"


def test_index_links_resolve():
    index = (DOCS / "index.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", index)
    local = [link for link in links if "://" not in link]
    assert "architecture.md" in local and "config-reference.md" in local
    for link in local:
        assert (DOCS / link).exists(), link


def test_docs_name_every_scenario_folder():
    scenarios = (DOCS / "scenarios.md").read_text()
    for folder in sorted((ROOT / "examples" / "configs").iterdir()):
        if folder.is_dir():
            assert f"`{folder.name}`" in scenarios, folder.name
