"""Datasets and DataLoaders from an experiment config, through the dataset plugin it names.

``loaders.dataset`` (default ``StandardHDF5Dataset``) is looked up in the registry; its
``Config`` validates the dataset keys of ``loaders`` and its ``create_datasets`` returns one
dataset per input file. Loaders differ from the reference where it was wrong or slow: the
train/val overlap check compares resolved files (after folder expansion), batches are per
process (DDP) instead of multiplied by the GPU count, memory is pinned for CUDA and workers
persist across epochs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from unet_core import registry
from unet_core.config.schema import ExperimentConfig, LoadersConfig
from unet_core.contracts import declared
from unet_core.errors import ConfigError
from unet_core.io.paths import expand_file_paths, overlapping

if TYPE_CHECKING:
    from torch.utils.data import DataLoader, Dataset

log = logging.getLogger(__name__)


def loaders_config(config: ExperimentConfig) -> LoadersConfig:
    if config.loaders is None:
        raise ConfigError("The config has no `loaders` section; it says which files to read.")
    return config.loaders


def dataset_component(config: ExperimentConfig) -> tuple[Any, Any]:
    """(dataset class, its validated Config) for ``loaders.dataset``."""
    ref = loaders_config(config).dataset_ref
    return registry.get("datasets", ref.name), ref.config


def needs_weight(config: ExperimentConfig) -> bool:
    """Whether the configured loss takes a per-voxel weight map (``Loss.needs_weight``)."""
    if config.loss is None:
        return False
    return bool(declared("losses", registry.get("losses", config.loss.name), "needs_weight"))


def input_lister(config: ExperimentConfig) -> tuple[Callable[..., Any] | None, Any]:
    """(the dataset's ``input_files(config, loaders, phase)`` or None, its validated Config).

    A lister the plugin declares light (at registration) is used without importing the
    dataset, so that ``unet config validate`` stays torch-free."""
    ref = loaders_config(config).dataset_ref
    lister = registry.light_attr("datasets", ref.name, "input_files")
    if lister is None:
        lister = declared("datasets", registry.get("datasets", ref.name), "input_files")
    return lister, ref.config


def input_files(config: ExperimentConfig, phase: str) -> list[str]:
    """The files (or folders, for folder datasets) a phase reads."""
    lister, dataset_config = input_lister(config)
    loaders = loaders_config(config)
    if lister is not None:
        return list(lister(dataset_config, loaders, phase))
    section = getattr(loaders, phase)
    if section is None:
        return []
    return expand_file_paths(section.file_paths, key=f"loaders.{phase}.file_paths")


def check_train_val_disjoint(config: ExperimentConfig) -> None:
    """ConfigError if a training file is also a validation file (compared resolved)."""
    loaders = loaders_config(config)
    if loaders.train is None or loaders.val is None:
        return
    shared = overlapping(input_files(config, "train"), input_files(config, "val"))
    if shared:
        raise ConfigError(
            f"loaders.train.file_paths and loaders.val.file_paths both contain "
            f"{', '.join(shared[:3])}{' ...' if len(shared) > 3 else ''}: validating on "
            f"training data hides overfitting. Give the val phase other files or folders."
        )


def build_datasets(config: ExperimentConfig, phase: str) -> list[Dataset[Any]]:
    """One dataset per input file of ``phase`` (``train``, ``val`` or ``test``)."""
    loaders = loaders_config(config)
    if getattr(loaders, phase, None) is None:
        raise ConfigError(f"loaders.{phase} is missing; it lists the {phase} files.")
    cls, dataset_config = dataset_component(config)
    weight = needs_weight(config) if phase != "test" else False
    datasets = list(cls.create_datasets(dataset_config, loaders, phase, needs_weight=weight))
    if not datasets:
        raise ConfigError(f"loaders.{phase}.file_paths gave no input files.")
    return datasets


def build_test_datasets(config: ExperimentConfig) -> list[Dataset[Any]]:
    """One test dataset per input file (each exposes ``file_path``, ``collate_fn``, ...)."""
    return build_datasets(config, "test")


def _device_is_cuda(config: ExperimentConfig) -> bool:
    import torch

    if config.device is not None:
        return config.device.startswith("cuda")
    return torch.cuda.is_available()


def _loader_kwargs(
    loaders: LoadersConfig, config: ExperimentConfig, multiprocessing_context: Any
) -> dict[str, Any]:
    workers = loaders.num_workers
    kwargs: dict[str, Any] = {
        "batch_size": loaders.batch_size,
        "num_workers": workers,
        "pin_memory": _device_is_cuda(config),
    }
    if workers > 0:
        kwargs["persistent_workers"] = True
        if multiprocessing_context is not None:
            kwargs["multiprocessing_context"] = multiprocessing_context
    return kwargs


def build_loaders(
    config: ExperimentConfig,
    *,
    distributed: bool = False,
    seed: int | None = None,
    multiprocessing_context: Any = None,
) -> dict[str, DataLoader[Any]]:
    """``{"train": DataLoader, "val": DataLoader}`` (val only if configured).

    Train is shuffled, val is not. ``seed`` (default ``config.manual_seed``) fixes the shuffle
    order and the workers' base seed, hence every augmentation. With ``distributed`` each
    process gets a ``DistributedSampler`` shard; call ``loader.sampler.set_epoch(epoch)``.
    """
    import torch
    from torch.utils.data import ConcatDataset, DataLoader
    from torch.utils.data.distributed import DistributedSampler

    loaders = loaders_config(config)
    if loaders.train is None:
        raise ConfigError("loaders.train is missing; training needs `file_paths` to learn from.")
    check_train_val_disjoint(config)
    seed = config.manual_seed if seed is None else seed
    kwargs = _loader_kwargs(loaders, config, multiprocessing_context)
    out: dict[str, DataLoader[Any]] = {}
    for phase in ("train", "val"):
        if getattr(loaders, phase) is None:
            continue
        dataset: ConcatDataset[Any] = ConcatDataset(build_datasets(config, phase))
        shuffle = phase == "train"
        generator = None
        if seed is not None:
            generator = torch.Generator().manual_seed(seed + (0 if shuffle else 1))
        sampler: DistributedSampler[Any] | None = None
        if distributed:
            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed or 0)
        out[phase] = DataLoader(
            dataset,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            generator=generator,
            **kwargs,
        )
        log.info("%s: %d samples from %d file(s)", phase, len(dataset), len(dataset.datasets))
    return out
