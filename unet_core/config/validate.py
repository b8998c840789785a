"""Validate a whole experiment before any work starts: schema, components, cross-checks.

Every problem is collected, then reported together, so a config with three mistakes needs
one run to fix, not three.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from unet_core import registry
from unet_core.config.problems import Problem, from_validation_error, unknown_key
from unet_core.config.refs import ComponentRef
from unet_core.config.schema import DEFAULT_NAMES, ExperimentConfig, LoadersConfig, Ref
from unet_core.config.yaml_source import YamlPath
from unet_core.errors import PluginError
from unet_core.interfaces import ComponentConfig
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
DATASET_PATH: YamlPath = ("loaders",)


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


def check_component(path: YamlPath, kind: str, spec: Any) -> tuple[list[Problem], Ref | None]:
    """Validate one section against its component's schema; returns (problems, ref)."""
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
        return [Problem((*path, "name"), exc.message, cause=exc)], None
    params = {k: v for k, v in spec.items() if k != "name"}
    what = f" for {singular(kind)} {name}"
    ignored = _ignored_keys(model, params)
    if ignored:  # a plain BaseModel drops unknown keys: a typo would pass unnoticed
        valid = sorted(model.model_fields)
        return [Problem((*path, key), unknown_key(key, what, valid)) for key in ignored], None
    try:
        return [], ComponentRef(kind, name, model.model_validate(params), path)
    except ValidationError as exc:
        return from_validation_error(exc, path, model, what), None


def _ignored_keys(model: type[BaseModel], params: Mapping[str, Any]) -> list[str]:
    """Keys a Config with pydantic's default ``extra="ignore"`` would drop without a word
    (``ComponentConfig`` forbids them; an explicit ``extra="allow"`` keeps them)."""
    if model.model_config.get("extra") not in (None, "ignore"):
        return []
    fields = model.model_fields.values()
    known = set(model.model_fields) | {f.alias for f in fields if f.alias}
    known |= {f.validation_alias for f in fields if isinstance(f.validation_alias, str)}
    return [str(k) for k in params if k not in known]


def check_dataset(data: Mapping[str, Any]) -> tuple[list[Problem], Ref | None]:
    """Loader keys beyond the generic ones belong to the dataset plugin's schema."""
    loaders = data.get("loaders")
    if not isinstance(loaders, Mapping):
        return [], None
    generic = set(LoadersConfig.model_fields)
    spec = {k: v for k, v in loaders.items() if k not in generic}
    spec["name"] = loaders.get("dataset") or DEFAULT_NAMES["dataset"]
    problems, ref = check_component(DATASET_PATH, "datasets", spec)
    return [
        Problem(("loaders", "dataset") if p.path[-1] == "name" else p.path, p.message)
        for p in problems
    ], ref


def cross_checks(cfg: ExperimentConfig) -> list[Problem]:
    """Checks that need two typed sections at once, declared by the components themselves.

    A model may declare ``check_patch_shape(config, patch_shape) -> str | None`` (each phase's
    patch), a loss or a metric ``check_config(config, model_ref) -> list[str]``, a scheduler
    ``check_config(config, higher_is_better) -> list[str]`` (the metric's declared direction,
    or trainer.eval_score_higher_is_better).
    """
    problems: list[Problem] = []
    check_patch = _light(cfg.model, "check_patch_shape")
    if callable(check_patch) and cfg.loaders is not None:
        for phase in PHASES:
            section = getattr(cfg.loaders, phase)
            patch = section.patch_shape if section is not None else None
            if patch is not None:
                message = check_patch(cfg.model.config, patch)
                if message:
                    path = ("loaders", phase, "slice_builder", "patch_shape")
                    problems.append(Problem(path, message))
    if cfg.loaders is not None:
        problems += _transform_patch_problems(cfg.loaders)
    check_loss = _light(cfg.loss, "check_config")
    if cfg.loss is not None and callable(check_loss):
        for message in check_loss(cfg.loss.config, cfg.model) or []:
            problems.append(Problem(("loss",), message))
    if cfg.trainer is None:
        return problems
    check_metric = _light(cfg.metric, "check_config")
    if callable(check_metric):
        for message in check_metric(cfg.metric.config, cfg.model) or []:
            problems.append(Problem(("eval_metric",), message))
    check_scheduler = _light(cfg.lr_scheduler, "check_config")
    higher = cfg.trainer.eval_score_higher_is_better
    if higher is None:
        declared = _light(cfg.metric, "higher_is_better")
        higher = declared if isinstance(declared, bool) else None
    if callable(check_scheduler) and higher is not None and cfg.lr_scheduler is not None:
        for message in check_scheduler(cfg.lr_scheduler.config, higher) or []:
            problems.append(Problem(("lr_scheduler", "mode"), message))
    return problems


def _transform_patch_problems(loaders: LoadersConfig) -> list[Problem]:
    """A transform's ``check_patch(config, patch_shape, batch_size)`` for each phase's patch
    (RandomRotate90 cannot batch non-square planes)."""
    problems: list[Problem] = []
    for phase in PHASES:
        section = getattr(loaders, phase)
        patch = section.patch_shape if section is not None else None
        if patch is None:
            continue
        found = [
            Problem(("loaders", phase, "transformer", role, i), message)
            for role in ("raw", "label", "weight")
            for i, ref in enumerate(getattr(section.transformer, role) or [])
            if (message := _patch_message(ref, patch, loaders.batch_size))
        ]
        problems += found[:1]  # raw and label transforms in sync: one cause, said once
    return problems


def _patch_message(ref: Ref, patch: Any, batch_size: int) -> str | None:
    check = _light(ref, "check_patch")
    return check(ref.config, patch, batch_size) if callable(check) else None


def _light(ref: Ref | None, attr: str) -> Any:
    if ref is None:
        return None
    try:
        return registry.light_attr(ref.kind, ref.name, attr)
    except PluginError:
        return None


def validate_components(data: Mapping[str, Any]) -> tuple[list[Problem], dict[YamlPath, Ref]]:
    """Problems and refs of every component section (and the dataset keys) of raw data."""
    problems: list[Problem] = []
    refs: dict[YamlPath, Ref] = {}
    for path, kind, spec in component_sections(data):
        found, ref = check_component(path, kind, spec)
        problems += found
        refs[path] = ref or _placeholder(kind, path)
    found, dataset = check_dataset(data)
    problems += found
    if dataset is not None:
        refs[DATASET_PATH] = dataset
    return problems, refs


def _placeholder(kind: str, path: YamlPath) -> Ref:
    """Stands in for an invalid section (already reported) while the rest is validated."""
    return ComponentRef(kind, "<invalid>", ComponentConfig(), path)


def with_refs(data: Mapping[str, Any], refs: Mapping[YamlPath, BaseModel | Ref]) -> dict[str, Any]:
    """A copy of raw data with each component section replaced by its ref."""
    out = copy.copy(dict(data))
    for path, ref in refs.items():
        if path == DATASET_PATH:
            continue
        node: Any = out
        for part in path[:-1]:
            child = node[part]
            child = list(child) if isinstance(child, list) else dict(child)
            node[part] = child
            node = child
        node[path[-1]] = ref
    return out
