"""``train(config)``: a validated config -> components from the registry -> a finished Trainer.

Order matters for failing fast: the checkpoint folder is checked and a ``resume`` checkpoint is
matched against the model before any data is read. Under torchrun (RANK/WORLD_SIZE/LOCAL_RANK)
the process joins the group first; rank 0 alone writes checkpoints, TensorBoard and progress.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core import registry
from unet_core.engine import data_order
from unet_core.engine import distributed as dist
from unet_core.engine.amp import default_channels_last, memory_format
from unet_core.engine.checkpoint import load_checkpoint, load_model_weights
from unet_core.engine.components import Components
from unet_core.engine.device import resolve_device
from unet_core.engine.progress import make_progress
from unet_core.engine.tensorboard import TensorBoardLogger
from unet_core.engine.trainer import BEST, LAST, Trainer
from unet_core.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import ExperimentConfig, TrainerConfig


def train(
    config: ExperimentConfig | Mapping[str, Any] | str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    overwrite: bool = True,
) -> Trainer:
    """Train from a config (object, mapping or YAML path); returns the finished Trainer.

    ``resume`` (or ``trainer.resume``) continues a run from its checkpoint; ``device``
    overrides the config's ``device`` key; ``overwrite=False`` refuses to start a new run in
    a folder that holds another run's checkpoints (``unet_core.train`` asks for that).
    """
    from unet_core.config import as_config

    cfg = as_config(config if not isinstance(config, os.PathLike) else os.fspath(config))
    ctx = dist.from_environment()
    try:
        trainer = build_trainer(cfg, resume=resume, device=device, ctx=ctx, overwrite=overwrite)
        return trainer.fit()
    finally:
        dist.shutdown()


def build_trainer(
    cfg: ExperimentConfig,
    *,
    resume: str | os.PathLike[str] | None = None,
    device: str | None = None,
    ctx: dist.DistContext | None = None,
    overwrite: bool = True,
) -> Trainer:
    """Everything :meth:`Trainer.fit` needs, built and restored but not yet run."""
    import torch

    tcfg = _check_sections(cfg)
    ctx = ctx or dist.from_environment()
    dev = resolve_device(device or cfg.device, local_rank=ctx.local_rank if ctx.enabled else None)
    resume_path = str(resume) if resume is not None else tcfg.resume
    checkpoint_dir = Path(
        os.path.dirname(os.path.abspath(resume_path)) if resume_path else tcfg.checkpoint_dir
    )
    if ctx.is_main:
        if not overwrite and resume_path is None:
            refuse_other_run(checkpoint_dir)
        ensure_writable(checkpoint_dir, resumed=resume_path is not None)
    ckpt = load_checkpoint(resume_path) if resume_path else None
    dist.init(ctx, dev)
    seed_everything(cfg.manual_seed, ctx.rank)

    model = registry.create("models", cfg.model).to(dev)
    dims = getattr(model, "spatial_dims", 3)
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
        higher = bool(getattr(metric, "higher_is_better", True))
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


def refuse_other_run(directory: Path) -> None:
    """CheckpointError if ``directory`` already holds a run's checkpoints (nothing is touched)."""
    found = [name for name in (LAST, BEST) if (directory / name).exists()]
    if found:
        raise CheckpointError(
            f"{str(directory)!r} (trainer.checkpoint_dir) already holds {', '.join(found)} of "
            "another run; a new run would replace them. Continue that run with "
            "resume=<its last_checkpoint.pytorch>, choose another trainer.checkpoint_dir, or "
            "pass overwrite=True to replace its checkpoints."
        )


def ensure_writable(directory: Path, *, resumed: bool = False) -> None:
    """Create ``directory``, prove a file can be written there and remove stale temp files."""
    key = "the folder of trainer.resume" if resumed else "trainer.checkpoint_dir"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".unet-write-test-")
        os.close(fd)
        os.unlink(probe)
        for name in (LAST, BEST):  # left behind by a run killed while writing
            for stale in directory.glob(f".{name}.*.tmp"):
                stale.unlink(missing_ok=True)
    except OSError as exc:
        raise CheckpointError(
            f"Checkpoints cannot be written to {str(directory)!r} ({key}): "
            f"{exc.strerror or exc}. Training was not started, so no time was lost. Choose a "
            "writable folder (e.g. `--set trainer.checkpoint_dir=runs/exp1`) or fix the "
            "folder's permissions."
        ) from None


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
    if getattr(component, "needs_metric", False):
        context["higher_is_better"] = higher
    scheduler = registry.create("lr_schedulers", cfg.lr_scheduler, **context)
    return scheduler, bool(getattr(component, "needs_metric", False))


def _forwards(
    model: torch.nn.Module, ctx: dist.DistContext, dev: torch.device, compile_: bool
) -> tuple[Any, Any]:
    """The training forward (DDP-wrapped, compiled) and the evaluation logits function."""
    import torch

    train_forward: Any = dist.wrap(model, ctx, dev)
    eval_logits: Any = getattr(model, "logits", model)
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
