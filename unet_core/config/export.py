"""JSON schema of a whole experiment, with every installed component's own schema.

Editors (VS Code's YAML extension, PyCharm) use it for completion and inline errors.
"""

from __future__ import annotations

from typing import Any

from unet_core import registry
from unet_core.config.schema import ExperimentConfig
from unet_core.config.validate import TOP_SECTIONS
from unet_core.kinds import KINDS


def component_schema(kind: str, name: str) -> dict[str, Any]:
    """One component's parameters as JSON schema, with ``name`` pinned to it."""
    schema = registry.config_model(kind, name).model_json_schema()
    props = {"name": {"const": name}, **schema.get("properties", {})}
    return {
        **schema,
        "title": name,
        "properties": props,
        "required": ["name", *schema.get("required", [])],
    }


def kind_schemas() -> dict[str, dict[str, Any]]:
    """Per kind, an ``anyOf`` over its working components (broken ones are skipped)."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        options = [
            component_schema(kind, rec.name)
            for rec in registry.default_registry.load_all(kind)
            if rec.error is None
        ]
        out[kind] = {"anyOf": options} if options else {"type": "object"}
    return out


def experiment_json_schema() -> dict[str, Any]:
    """The ExperimentConfig schema with component sections replaced by their real schemas."""
    schema = ExperimentConfig.model_json_schema()
    per_kind = kind_schemas()
    defs = schema.setdefault("$defs", {})
    for kind, sub in per_kind.items():
        defs[f"component_{kind}"] = sub
    props = schema["properties"]
    for key, kind in TOP_SECTIONS.items():
        ref = {"$ref": f"#/$defs/component_{kind}"}
        props[key] = {
            "anyOf": [ref, {"type": "null"}],
            "description": props[key].get("description", ""),
        }
    phase = defs.get("PhaseConfig", {}).get("properties", {})
    if phase:
        phase["slice_builder"] = {
            "anyOf": [{"$ref": "#/$defs/component_slice_builders"}, {"type": "null"}]
        }
    transformer = defs.get("TransformerConfig", {}).get("properties", {})
    for pipe in ("raw", "label", "weight"):
        if pipe in transformer:
            items = {"$ref": "#/$defs/component_transforms"}
            transformer[pipe] = {"anyOf": [{"type": "array", "items": items}, {"type": "null"}]}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
