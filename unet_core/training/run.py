"""``train(config)``: a validated config -> components from the registry -> a finished Trainer.

Order matters for failing fast: the run folder (``trainer.checkpoint_dir``) is claimed
(locked, checked to belong to no other run: training/run_folder.py) and a ``resume`` checkpoint is
matched against the model before any data is read. A resumed run continues into the config's
``checkpoint_dir``: in place when the checkpoint lies there, else into that new folder, leaving
the checkpoint's own folder untouched. Under torchrun (RANK/WORLD_SIZE/LOCAL_RANK) rank 0 claims
the folder before joining the group (if it refuses, torchrun stops the other ranks); rank 0 alone
writes checkpoints, TensorBoard and progress.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core import registry
from unet_core.contracts import declared
from unet_core.engine.amp import default_channels_last, memory_format
from unet_core.engine.checkpoint import load_checkpoint, load_model_weights
from unet_core.engine.device import resolve_device
from unet_core.engine.progress import make_progress
from unet_core.errors import ConfigError
from unet_core.training import data_order
from unet_core.training import distributed as dist
from unet_core.training.components import Components
from unet_core.training.run_folder import RunFolder, claim, emit
from unet_core.training.tensorboard import TensorBoardLogger
from unet_core.training.trainer import Trainer

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import ExperimentConfig, TrainerConfig


def train(
    config: ExperimentConfig | Mapping[str, Any] | str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    overwrite: bool = False,
) -> Trainer:
    """Train from a config (object, mapping or YAML path); returns the finished Trainer.

    ``resume`` (or ``trainer.resume``) continues a run from its checkpoint; ``device``
    overrides the config's ``device`` key; ``overwrite`` starts over in a run folder that holds
    another run, moving that run's files to ``previous-runs/`` first.
    """
    from unet_core.config import as_config

    cfg = as_config(config if not isinstance(config, os.PathLike) else os.fspath(config))
    tcfg = _check_sections(cfg)
    ctx = dist.from_environment()
    resume_path = str(resume) if resume is not None else tcfg.resume
    folder = None
    if ctx.is_main:  # first of all: nothing is built or read for a folder we may not use
        folder = claim(Path(tcfg.checkpoint_dir), resume=resume_path, overwrite=overwrite)
        emit(folder.notes)
    try:
        trainer = build_trainer(cfg, resume=resume_path, device=device, ctx=ctx, run_folder=folder)
        return trainer.fit()
    finally:
        if folder is not None:
            folder.release()
        dist.shutdown()


def build_trainer(
    cfg: ExperimentConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    ctx: dist.DistContext | None = None,
    run_folder: RunFolder | None = None,
) -> Trainer:
    """Everything :meth:`Trainer.fit` needs, built and restored but not yet run.

    ``run_folder``: the claimed ``trainer.checkpoint_dir`` (rank 0); ``run.json`` is written
    once everything is built. Without it, :meth:`Trainer.fit` claims the folder itself.
    """
    tcfg = _check_sections(cfg)
    ctx = ctx or dist.from_environment()
    dev = resolve_device(device or cfg.device, local_rank=ctx.local_rank if ctx.enabled else None)
    resume_path = str(resume) if resume is not None else tcfg.resume
    checkpoint_dir = Path(os.path.abspath(tcfg.checkpoint_dir))
    trainer = _build(cfg, checkpoint_dir, resume_path, dev, ctx)
    if run_folder is not None:
        run_folder.start(
            cfg, resumed_from=resume_path, precision=trainer.precision.resolved.record()
        )
        trainer.run_folder = run_folder
    return trainer


def _build(
    cfg: ExperimentConfig,
    checkpoint_dir: Path,
    resume_path: str | None,
    dev: torch.device,
    ctx: dist.DistContext,
) -> Trainer:
    """Model, loss, metric, optimizer, resumed state, loaders: in the order that fails fastest."""
    import torch

    tcfg = cfg.trainer
    assert tcfg is not None
    ckpt = load_checkpoint(resume_path) if resume_path else None
    dist.init(ctx, dev)
    seed_everything(cfg.manual_seed, ctx.rank)

    model = registry.create("models", cfg.model).to(dev)
    dims = declared("models", model, "spatial_dims")
    channels_last = tcfg.channels_last
    if channels_last is None:
        channels_last = default_channels_last(dims, dev.type)
    fmt = memory_format(dims, channels_last)
    if fmt is not None:
        model = model.to(memory_format=fmt)
    assert cfg.loss is not None
    loss = registry.create("losses", cfg.loss)
    if isinstance(loss, torch.nn.Module):
        loss = loss.to(dev)
    metric = registry.create("metrics", cfg.metric)
    higher = tcfg.eval_score_higher_is_better
    if higher is None:
        higher = bool(declared("metrics", metric, "higher_is_better"))
    optimizer = registry.create("optimizers", cfg.optimizer, params=model.parameters())
    scheduler, needs_metric = _scheduler(cfg, optimizer, higher)
    if tcfg.pre_trained and ckpt is None:
        load_model_weights(model, tcfg.pre_trained, model_config=cfg.model.dump())

    parts = Components(
        config=cfg,
        model=model,
        loss=loss,
        metric=metric,
        optimizer=optimizer,
        scheduler=scheduler,
        loaders={},
        device=dev,
        checkpoint_dir=checkpoint_dir,
        higher_is_better=higher,
        ctx=ctx,
        memory_format=fmt,
        scheduler_needs_metric=needs_metric,
    )
    from unet_core.hooks import plugin_manager

    progress = make_progress(tcfg.progress, every=tcfg.log_after_iters, is_main=ctx.is_main)
    trainer = Trainer(parts, tensorboard=None, progress=progress, hooks=plugin_manager().hook)
    if ckpt is not None:
        assert resume_path is not None
        trainer.resume_from(ckpt, source=resume_path)
        progress.message(
            f"Resumed from {resume_path}: {trainer.iteration} iterations done, epoch "
            f"{trainer.epoch}, best score {trainer.best_eval_score:.4g}."
        )

    from unet_core.engine.data import build_loaders

    parts.loaders = dict(build_loaders(cfg, distributed=ctx.enabled))
    parts.loaders["train"] = data_order.without_persistent_workers(parts.loaders["train"])
    parts.train_forward, parts.eval_logits = _forwards(model, ctx, dev, tcfg.compile)
    trainer.attach(parts)
    trainer.resumed_from = resume_path
    if ctx.is_main:
        trainer.tensorboard = _tensorboard(cfg, checkpoint_dir, ckpt, trainer.iteration)
    return trainer


def _check_sections(cfg: ExperimentConfig) -> TrainerConfig:
    missing = [
        key
        for key, value in (("trainer", cfg.trainer), ("loss", cfg.loss), ("loaders", cfg.loaders))
        if value is None
    ]
    loaders = cfg.loaders
    if loaders is not None:
        missing += [f"loaders.{p}" for p in ("train", "val") if getattr(loaders, p) is None]
    if missing:
        raise ConfigError(
            f"Training needs the config section(s) {', '.join(missing)}, which are missing. Add "
            "them (see examples/configs/ for complete training configs)."
        )
    assert cfg.trainer is not None
    return cfg.trainer


def seed_everything(seed: int | None, rank: int = 0) -> None:
    """``manual_seed``: python, numpy and torch generators (offset by rank under DDP)."""
    if seed is None:
        return
    import numpy as np
    import torch

    seed = seed + rank
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _scheduler(cfg: ExperimentConfig, optimizer: Any, higher: bool) -> tuple[Any, bool]:
    if cfg.lr_scheduler is None:
        return None, False
    component = registry.get("lr_schedulers", cfg.lr_scheduler.name)
    context: dict[str, Any] = {"optimizer": optimizer}
    needs_metric = bool(declared("lr_schedulers", component, "needs_metric"))
    if needs_metric:
        context["higher_is_better"] = higher
    scheduler = registry.create("lr_schedulers", cfg.lr_scheduler, **context)
    return scheduler, needs_metric


def _forwards(
    model: torch.nn.Module, ctx: dist.DistContext, dev: torch.device, compile_: bool
) -> tuple[Any, Any]:
    """The training forward (DDP-wrapped, compiled) and the evaluation logits function."""
    import torch

    train_forward: Any = dist.wrap(model, ctx, dev)
    eval_logits: Any = declared("models", model, "logits") or model
    if compile_:
        train_forward = torch.compile(train_forward)
        eval_logits = torch.compile(eval_logits)
    return train_forward, eval_logits


def _tensorboard(
    cfg: ExperimentConfig, checkpoint_dir: Path, ckpt: dict[str, Any] | None, iteration: int
) -> TensorBoardLogger:
    """A new run, or the resumed run's own folder with events after ``iteration`` purged."""
    assert cfg.trainer is not None
    run = ckpt.get("tensorboard_run") if ckpt else None
    if run and not (checkpoint_dir / "logs" / str(run)).is_dir():
        run = None
    logger = TensorBoardLogger(
        checkpoint_dir,
        run_name=str(run) if run else None,
        formatter=cfg.trainer.tensorboard_formatter,
        purge_step=iteration + 1 if run else None,
    )
    logger.save_config(cfg.model_dump(mode="json"))
    return logger
