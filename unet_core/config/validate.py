"""Validate a whole experiment before any work starts: schema, components, cross-checks.

Every problem is collected, then reported together, so a config with three mistakes needs
one run to fix, not three.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from unet_core import registry
from unet_core.config.problems import Problem, from_validation_error
from unet_core.config.schema import ExperimentConfig, LoadersConfig
from unet_core.config.yaml_source import YamlPath
from unet_core.errors import PluginError
from unet_core.kinds import singular

#: Top-level component sections and their kinds.
TOP_SECTIONS = {
    "model": "models",
    "loss": "losses",
    "eval_metric": "metrics",
    "optimizer": "optimizers",
    "lr_scheduler": "lr_schedulers",
    "predictor": "predictors",
    "postprocessor": "postprocessors",
}
PHASES = ("train", "val", "test")
PIPELINES = ("raw", "label", "weight")


#: Sections whose ``name`` may be omitted, and the reference's default for it.
DEFAULT_NAMES = {"optimizer": "Adam", "predictor": "StandardPredictor"}


def component_sections(data: Mapping[str, Any]) -> Iterator[tuple[YamlPath, str, Any]]:
    """Every ``{name: X, ...}`` section of raw config data as (YAML path, kind, spec)."""
    for key, kind in TOP_SECTIONS.items():
        spec = data.get(key)
        if isinstance(spec, Mapping) and "name" not in spec and key in DEFAULT_NAMES:
            spec = {"name": DEFAULT_NAMES[key], **spec}
        if spec is not None:
            yield (key,), kind, spec
    loaders = data.get("loaders")
    if not isinstance(loaders, Mapping):
        return
    for phase in PHASES:
        section = loaders.get(phase)
        if not isinstance(section, Mapping):
            continue
        if section.get("slice_builder") is not None:
            yield ("loaders", phase, "slice_builder"), "slice_builders", section["slice_builder"]
        transformer = section.get("transformer")
        if not isinstance(transformer, Mapping):
            continue
        for pipe in PIPELINES:
            specs = transformer.get(pipe)
            for i, spec in enumerate(specs if isinstance(specs, list) else []):
                yield ("loaders", phase, "transformer", pipe, i), "transforms", spec


def check_component(path: YamlPath, kind: str, spec: Any) -> tuple[list[Problem], Any]:
    """Validate one section against its component's schema; returns (problems, config)."""
    if not isinstance(spec, Mapping):
        return [Problem(path, f"expected a mapping with a `name` key, got {spec!r}")], None
    name = spec.get("name")
    if not isinstance(name, str):
        names = ", ".join(registry.list(kind)[:12])
        return [
            Problem(path, f"missing `name` of the {singular(kind)} (one of: {names}, ...)")
        ], None
    try:
        model = registry.config_model(kind, name)
    except PluginError as exc:
        return [Problem((*path, "name"), exc.message)], None
    params = {k: v for k, v in spec.items() if k != "name"}
    try:
        return [], model.model_validate(params)
    except ValidationError as exc:
        return from_validation_error(exc, path, model, f" for {singular(kind)} {name}"), None


def check_dataset(data: Mapping[str, Any]) -> list[Problem]:
    """Loader keys beyond the generic ones belong to the dataset plugin's schema."""
    loaders = data.get("loaders")
    if not isinstance(loaders, Mapping):
        return []
    generic = set(LoadersConfig.model_fields)
    spec = {k: v for k, v in loaders.items() if k not in generic}
    spec["name"] = loaders.get("dataset") or "StandardHDF5Dataset"
    problems, _ = check_component(("loaders",), "datasets", spec)
    return [
        Problem(("loaders", "dataset") if p.path[-1] == "name" else p.path, p.message)
        for p in problems
    ]


def cross_checks(cfg: ExperimentConfig, configs: dict[YamlPath, BaseModel]) -> list[Problem]:
    """Checks that need two sections at once (model vs patch, loss vs model)."""
    problems: list[Problem] = []
    model_cfg = configs.get(("model",))
    check_patch = _light("models", cfg.model, "check_patch_shape")
    if model_cfg is not None and callable(check_patch) and cfg.loaders is not None:
        for phase in PHASES:
            section = getattr(cfg.loaders, phase)
            sb = section.slice_builder if section is not None else None
            patch = sb.get("patch_shape") if isinstance(sb, Mapping) else None
            if patch is not None:
                message = check_patch(model_cfg, tuple(patch))
                if message:
                    path = ("loaders", phase, "slice_builder", "patch_shape")
                    problems.append(Problem(path, message))
    loss_cfg = configs.get(("loss",))
    check_loss = _light("losses", cfg.loss, "check_config")
    if loss_cfg is not None and callable(check_loss):
        for message in check_loss(loss_cfg, dict(cfg.model)) or []:
            problems.append(Problem(("loss",), message))
    return problems


def _light(kind: str, spec: Any, attr: str) -> Any:
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
        return None
    try:
        return registry.light_attr(kind, spec["name"], attr)
    except PluginError:
        return None


def validate_components(
    data: Mapping[str, Any],
) -> tuple[list[Problem], dict[YamlPath, BaseModel]]:
    """Problems of every component section (and the dataset keys) of raw config data."""
    problems: list[Problem] = []
    configs: dict[YamlPath, BaseModel] = {}
    for path, kind, spec in component_sections(data):
        found, config = check_component(path, kind, spec)
        problems += found
        if config is not None:
            configs[path] = config
    problems += check_dataset(data)
    return problems, configs
