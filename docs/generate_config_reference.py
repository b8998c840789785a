"""Write docs/config-reference.md from the schemas, so the reference never drifts from the code.

It walks the experiment schema (``unet_core.config.schema.ExperimentConfig`` and its sections)
and the ``Config`` of every component found through ``unet_core.registry``: name, kind,
parameters, types, defaults and descriptions. ``tests/test_docs.py`` regenerates the text and
fails when the committed file differs.

    python docs/generate_config_reference.py            # rewrite docs/config-reference.md
    python docs/generate_config_reference.py --check    # exit 1 if the file is out of date
    python docs/generate_config_reference.py --all      # include third-party plugins (stdout)

By default only the components shipped with unet-core are listed, so the committed file does
not depend on which other plugin packages happen to be installed.
"""

from __future__ import annotations

import argparse
import enum
import inspect
import json
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from unet_core import registry
from unet_core.config import schema
from unet_core.config.validate import TOP_SECTIONS
from unet_core.kinds import KINDS, singular

OUTPUT = Path(__file__).resolve().parent / "config-reference.md"
BUILTIN_DISTRIBUTION = "unet-core"

KIND_INTRO = {
    "models": "Top-level `model` section.",
    "losses": "Top-level `loss` section (training only).",
    "metrics": "Top-level `eval_metric` section (validation during training).",
    "datasets": "`loaders.dataset` names one of these; its keys sit directly in `loaders`.",
    "transforms": "Entries of `loaders.<phase>.transformer.raw` / `label` / `weight` lists.",
    "slice_builders": "`loaders.<phase>.slice_builder`.",
    "predictors": "Top-level `predictor` section (prediction only; default StandardPredictor).",
    "postprocessors": "Top-level `postprocessor` section: instance segmentation of a prediction.",
    "optimizers": "Top-level `optimizer` section (`name` defaults to Adam).",
    "lr_schedulers": "Top-level `lr_scheduler` section; stepped as described for each one.",
    "formats": "Volume formats: chosen for inputs by suffix or URL scheme, for outputs by "
    "`predictor.output_format`; no keys.",
}


# -- rendering of types and values ------------------------------------------------------------


def type_name(annotation: Any) -> str:
    """A short, readable type: ``int | None``, ``list[int]``, ``'min' | 'max'``."""
    if annotation is None or annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) if isinstance(a, str) else str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        if name == "tuple" and len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_name(args[0])}, ...]"
        inner = ", ".join(type_name(a) for a in args) if args else ""
        return f"{name}[{inner}]" if inner else name
    if annotation is Any:
        return "any"
    if inspect.isclass(annotation):
        if issubclass(annotation, BaseModel):
            return "mapping"
        if issubclass(annotation, enum.Enum):
            return " | ".join(json.dumps(m.value) for m in annotation)
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):  # dicts and ComponentRefs (``{name: X, ...}``)
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    return value


def default_text(info: FieldInfo) -> str:
    """``(required)``, or the default as YAML-like JSON (true, null, [1, 2])."""
    if info.is_required():
        return "(required)"
    if info.default_factory is not None:
        try:
            value = info.default_factory()  # type: ignore[call-arg]
        except TypeError:
            return "(computed)"
    else:
        value = info.default
    if value is PydanticUndefined:
        return "(required)"
    try:
        text = json.dumps(_plain(value))
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_model(factory: Any) -> bool:
    return inspect.isclass(factory) and issubclass(factory, BaseModel)


def cell(text: str) -> str:
    """Text that is safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def code(text: str) -> str:
    return f"`{text}`" if text else ""


def aliases(info: FieldInfo) -> list[str]:
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return [c for c in alias.choices if isinstance(c, str)]
    return [alias] if isinstance(alias, str) else []


def field_rows(
    model: type[BaseModel], skip: tuple[str, ...] = (), links: dict[str, str] | None = None
) -> list[str]:
    """One table row per field: key | type | default | description.

    ``links`` replaces the type of a key with a Markdown link (component kinds, sub-sections).
    """
    rows = []
    for key, info in model.model_fields.items():
        if key in skip:
            continue
        description = info.description or ""
        extra = [a for a in aliases(info) if a != key]
        if extra:
            description += " Also accepted as " + ", ".join(code(a) for a in extra) + "."
        kind = (links or {}).get(key)
        type_text = kind if kind else cell(code(type_name(info.annotation)))
        nested = info.default_factory is not None and _is_model(info.default_factory)
        default_cell = "see the section" if nested else cell(code(default_text(info)))
        rows.append(f"| {code(key)} | {type_text} | {default_cell} | {cell(description)} |")
    return rows


def table(
    model: type[BaseModel], skip: tuple[str, ...] = (), links: dict[str, str] | None = None
) -> list[str]:
    rows = field_rows(model, skip, links)
    if not rows:
        return ["No parameters besides `name`.", ""]
    return ["| key | type | default | description |", "|---|---|---|---|", *rows, ""]


def summary(obj: Any) -> str:
    """The first paragraph of a docstring, on one line."""
    doc = inspect.getdoc(obj) or ""
    first = doc.split("\n\n")[0]
    return " ".join(first.split())


# -- the document ----------------------------------------------------------------------------

#: (anchor, title, model, introduction, links of keys to other sections)
SECTIONS: list[tuple[str, str, type[BaseModel], str, dict[str, str]]] = [
    (
        "section-trainer",
        "trainer",
        schema.TrainerConfig,
        "Training loop, checkpoints and logging (`unet train`).",
        {"tensorboard_formatter": "[section](#section-tensorboard-formatter)"},
    ),
    (
        "section-tensorboard-formatter",
        "trainer.tensorboard_formatter",
        schema.TensorboardFormatterConfig,
        "How image panels are drawn in TensorBoard.",
        {},
    ),
    (
        "section-loaders",
        "loaders",
        schema.LoadersConfig,
        "Data loading. Keys not listed here belong to the dataset named by `loaders.dataset` "
        "(see [datasets](#datasets)), e.g. `raw_internal_path`, `global_normalization`. "
        "`train`, `val` and `test` are [phase sections](#section-phase).",
        {},
    ),
    (
        "section-phase",
        "loaders.train / loaders.val / loaders.test",
        schema.PhaseConfig,
        "One phase's files, patch grid and transforms.",
        {
            "slice_builder": "[slice builder](#slice_builders)",
            "transformer": "[section](#section-transformer)",
        },
    ),
    (
        "section-transformer",
        "loaders.&lt;phase&gt;.transformer",
        schema.TransformerConfig,
        "Transform lists, applied in order (see [transforms](#transforms)).",
        {pipe: "list of [transforms](#transforms)" for pipe in ("raw", "label", "weight")},
    ),
]


def experiment_part() -> list[str]:
    links = {key: f"[{singular(kind)}](#{kind})" for key, kind in TOP_SECTIONS.items()}
    links["trainer"] = "[section](#section-trainer)"
    links["loaders"] = "[section](#section-loaders)"
    lines = [
        "## Experiment",
        "",
        "The top-level keys are pytorch-3dunet's. A component section is `{name: X, ...}`, "
        "where X's parameters are listed under [Components](#components).",
        "",
        "### Top level",
        "",
        *table(schema.ExperimentConfig, links=links),
    ]
    for anchor_id, title, model, intro, section_links in SECTIONS:
        skip = ("train", "val", "test") if model is schema.LoadersConfig else ()
        lines += [f'<a id="{anchor_id}"></a>', "", f"### {title}", "", intro, ""]
        lines += table(model, skip, section_links)
        legacy = getattr(schema, "LEGACY_TRAINER_KEYS", {})
        if model is schema.TrainerConfig and legacy:
            pairs = ", ".join(f"`{old}` → `{new}`" for old, new in legacy.items())
            lines += [f"Deprecated keys still accepted (with a warning): {pairs}.", ""]
    return lines


def component_part(include_all: bool) -> list[str]:
    lines = [
        "## Components",
        "",
        "Every component is `{name: X, ...parameters}`; unknown parameters are errors. "
        "`unet plugins show X` prints the same table for any installed component.",
        "",
    ]
    for kind, group in KINDS.items():
        records = [
            r
            for r in registry.default_registry.load_all(kind)
            if r.error is None and (include_all or r.distribution == BUILTIN_DISTRIBUTION)
        ]
        lines += [f"### {kind}", "", f"{KIND_INTRO.get(kind, '')} Entry-point group `{group}`."]
        lines += ["", ", ".join(f"[{r.name}](#{anchor(kind, r.name)})" for r in records), ""]
        for rec in sorted(records, key=lambda r: r.name.lower()):
            obj = registry.get(kind, rec.name)
            where = "" if rec.distribution == BUILTIN_DISTRIBUTION else f" ({rec.distribution})"
            lines += [
                f'<a id="{anchor(kind, rec.name)}"></a>',
                "",
                f"#### {rec.name}{where}",
                "",
                f"*{singular(kind)}* — {summary(obj) or 'No description.'}",
                "",
                *table(registry.config_model(kind, rec.name)),
            ]
    return lines


def anchor(kind: str, name: str) -> str:
    return f"{kind}-{name}".lower()


def render(include_all: bool = False) -> str:
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by docs/generate_config_reference.py from the schemas; do not edit. -->",
        "",
        "Generated from the schemas by `python docs/generate_config_reference.py`; "
        "`tests/test_docs.py` fails when this file is out of date. Every key here is checked "
        "by `unet config validate` before any work starts.",
        "",
        *experiment_part(),
        *component_part(include_all),
    ]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is stale")
    parser.add_argument("--all", action="store_true", help="include third-party plugins")
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT, help="file to write")
    args = parser.parse_args(argv)
    text = render(include_all=args.all)
    if args.check:
        current = args.output.read_text() if args.output.is_file() else ""
        if current != text:
            print(f"{args.output} is out of date; run python docs/generate_config_reference.py")
            return 1
        return 0
    if args.all and args.output == OUTPUT:
        sys.stdout.write(text)
        return 0
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
