"""``load_config``: YAML file + ``--set`` overrides -> a fully validated ExperimentConfig."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from unet_core.config.overrides import apply_overrides
from unet_core.config.problems import from_validation_error, raise_problems
from unet_core.config.schema import ExperimentConfig
from unet_core.config.validate import (
    DATASET_PATH,
    cross_checks,
    validate_components,
    with_refs,
)
from unet_core.config.yaml_source import YamlSource


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Read ``path``, apply overrides, validate every section; raises ConfigError listing all."""
    return validate_source(YamlSource.from_file(path), overrides)


def config_from_dict(data: Mapping[str, Any], overrides: Iterable[str] = ()) -> ExperimentConfig:
    """Same as :func:`load_config` for a mapping built in Python."""
    return validate_source(YamlSource(copy.deepcopy(dict(data)), {}, "<config>"), overrides)


def validate_source(source: YamlSource, overrides: Iterable[str] = ()) -> ExperimentConfig:
    data = source.data
    overridden = set(apply_overrides(data, overrides))
    problems, refs = validate_components(data)
    cfg = None
    try:  # each component section is already a ref here: validated once, above
        cfg = ExperimentConfig.model_validate(with_refs(data, refs))
    except ValidationError as exc:
        problems = from_validation_error(exc, (), ExperimentConfig) + problems
    if cfg is not None and cfg.loaders is not None and DATASET_PATH in refs:
        cfg.loaders.with_dataset_ref(refs[DATASET_PATH])
    if cfg is not None and not problems:
        problems = cross_checks(cfg)
    raise_problems(sorted(problems, key=lambda p: source.line(p.path) or 0), source, overridden)
    assert cfg is not None
    return cfg


def as_config(config: ExperimentConfig | Mapping[str, Any] | str | Path) -> ExperimentConfig:
    """Accept what the public API accepts: a validated config, a mapping or a YAML path."""
    if isinstance(config, ExperimentConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_dict(config)
    return load_config(config)
