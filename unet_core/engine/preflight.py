"""What ``unet config validate`` checks beyond the schema, so that "valid" means "it will run":
every input path exists, no training file is also a validation file, every checkpoint exists
and fits the configured model, and every output folder exists or can be created, and is
writable.

Nothing is created or changed: a folder is proven writable by a temporary file that is gone
again before the check returns. Problems are collected, each at its config key.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.config.problems import Problem
from unet_core.errors import UserError

if TYPE_CHECKING:
    from unet_core.config import ExperimentConfig

PHASES = ("train", "val", "test")


def file_problems(cfg: ExperimentConfig) -> list[Problem]:
    """Every missing input, missing or unfitting checkpoint and unwritable output folder."""
    problems = _input_problems(cfg)
    if not problems:
        problems += _shared_input_problems(cfg)
    for path, value in _checkpoints(cfg):
        problems += _checkpoint_problems(cfg, path, value)
    for path, value in _output_folders(cfg):
        message = folder_problem(Path(value))
        if message:
            problems.append(Problem(path, message))
    return problems


def _input_problems(cfg: ExperimentConfig) -> list[Problem]:
    """Each ``file_paths`` entry that names no volumes, unless the dataset lists its inputs
    itself (``input_files``) and accepts them (DSB2018: folders holding images/)."""
    from unet_core.engine.data import input_lister, loaders_config
    from unet_core.io.paths import expand_file_paths

    problems: list[Problem] = []
    if cfg.loaders is None:
        return problems
    lister, dataset_config = input_lister(cfg)
    for phase in PHASES:
        section = getattr(cfg.loaders, phase)
        if section is None:
            continue
        key = f"loaders.{phase}.file_paths"
        found = []
        for i, entry in enumerate(section.file_paths):
            try:
                expand_file_paths([entry], key=key)
            except UserError as exc:
                found.append(Problem(("loaders", phase, "file_paths", i), str(exc)))
        if lister is not None:
            try:
                lister(dataset_config, loaders_config(cfg), phase)
                found = []  # the dataset reads these entries its own way
            except UserError as exc:
                found = found or [Problem(("loaders", phase, "file_paths"), str(exc))]
        problems += found
    return problems


def _shared_input_problems(cfg: ExperimentConfig) -> list[Problem]:
    """The refusal ``unet train`` gives for validation files that are training files."""
    from unet_core.engine.data import check_train_val_disjoint

    try:
        check_train_val_disjoint(cfg)
    except UserError as exc:
        return [Problem(("loaders", "val", "file_paths"), str(exc))]
    return []


def _checkpoints(cfg: ExperimentConfig) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    if cfg.model_path:
        found.append((("model_path",), cfg.model_path))
    if cfg.trainer is not None:
        for key in ("pre_trained", "resume"):
            value = getattr(cfg.trainer, key)
            if value:
                found.append((("trainer", key), value))
    return found


def _checkpoint_problems(cfg: ExperimentConfig, path: tuple[str, ...], value: str) -> list[Problem]:
    """The file exists, reads with weights_only=True and its state dict fits the model."""
    from unet_core.engine.checkpoint import load_checkpoint
    from unet_core.io.model_package import is_model_package

    where = ".".join(path)
    if is_model_package(Path(value)):  # a package brings its own network
        return []
    try:
        state = load_checkpoint(value)["model_state_dict"]
    except UserError as exc:
        return [Problem(path, str(exc))]
    message = model_mismatch(cfg, state, f"{where} {value}")
    return [Problem(path, message)] if message else []


def model_mismatch(cfg: ExperimentConfig, state: dict[str, Any], source: str) -> str | None:
    """The paragraph saying how ``state`` differs from the configured model, or None."""
    from unet_core import registry
    from unet_core.engine.checkpoint import fit_state

    try:
        model = registry.create("models", cfg.model)
    except UserError as exc:
        return f"the model section cannot be built to compare with it: {exc}"
    return fit_state(model, state, cfg.model.dump(), source)[1]


def _output_folders(cfg: ExperimentConfig) -> list[tuple[tuple[str, ...], str]]:
    found: list[tuple[tuple[str, ...], str]] = []
    if cfg.trainer is not None:
        found.append((("trainer", "checkpoint_dir"), cfg.trainer.checkpoint_dir))
    if cfg.loaders is not None and cfg.loaders.output_dir:
        found.append((("loaders", "output_dir"), cfg.loaders.output_dir))
    return found


def folder_problem(folder: Path) -> str | None:
    """Why files cannot be written into ``folder`` (created if missing), or None."""
    folder = Path(os.path.expanduser(str(folder)))
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        return (
            f"{folder} cannot be a folder: {existing} is a file. Choose another folder, or "
            "move that file."
        )
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".unet-validate-"):
            pass
    except OSError as exc:
        what = "is" if existing == folder else f"does not exist and its parent {existing} is"
        return (
            f"{folder} {what} not writable ({exc.strerror or exc}). Choose a folder you can "
            "write to, or fix its permissions."
        )
    return None
