"""The trainer's state as a checkpoint dict, and resuming from one.

Keys: the reference's (``num_epochs`` = epoch + 1, ``num_iterations``, ``model_state_dict``,
``best_eval_score``, ``optimizer_state_dict``), so pytorch-3dunet can load our files, plus what
an exact continuation needs: scheduler and grad-scaler states, ``epoch`` and ``epoch_batches``
(position inside the epoch), the RNG states now and at the start of the epoch (per rank under
DDP), the config, the TensorBoard run and the package version. A reference checkpoint (no
``epoch`` key) resumes as the reference does: at the start of epoch ``num_epochs``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from unet_core.engine.checkpoint import load_model_weights, state_dict_of
from unet_core.errors import CheckpointError
from unet_core.training import distributed as dist
from unet_core.training.snapshots import cpu_copy, rng_state

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import ExperimentConfig
    from unet_core.engine.amp import Precision
    from unet_core.engine.progress import Progress
    from unet_core.training.tensorboard import TensorBoardLogger


class TrainState:
    """Mixin of :class:`~unet_core.training.trainer.Trainer`: (de)serialising its state."""

    config: ExperimentConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    precision: Precision
    tensorboard: TensorBoardLogger | None
    progress: Progress
    ctx: dist.DistContext
    iteration: int
    epoch: int
    epoch_batches: int
    best_eval_score: float
    last_eval_score: float | None
    higher_is_better: bool
    saved_iteration: int | None
    _epoch_rng: dict[str, Any]
    _replay: dict[str, Any] | None

    def gather_rng(self) -> list[dict[str, Any]]:
        """Every rank's RNG states now and at the epoch start (collective under DDP)."""
        mine = {"rng_state": rng_state(), "epoch_rng_state": cpu_copy(self._epoch_rng)}
        return _gather(mine, self.ctx)

    def state_dict(self, rank_states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A CPU copy of everything needed to continue; ``rank_states`` from :meth:`gather_rng`."""
        from unet_core.version import __version__

        rank_states = rank_states or self.gather_rng()
        mine = rank_states[0]
        scaler = self.precision.scaler
        state: dict[str, Any] = {
            "num_epochs": self.epoch + 1,
            "num_iterations": self.iteration,
            "model_state_dict": cpu_copy(state_dict_of(self.model)),
            "best_eval_score": self.best_eval_score,
            "optimizer_state_dict": cpu_copy(self.optimizer.state_dict()),
            "scheduler_state_dict": (
                cpu_copy(self.scheduler.state_dict())
                if hasattr(self.scheduler, "state_dict")
                else None
            ),
            "scaler_state_dict": scaler.state_dict() if scaler is not None else None,
            "epoch": self.epoch,
            "epoch_batches": self.epoch_batches,
            "rng_state": mine["rng_state"],
            "epoch_rng_state": mine["epoch_rng_state"],
            "world_size": self.ctx.world_size,
            "eval_score_higher_is_better": self.higher_is_better,
            "last_eval_score": self.last_eval_score,
            "config": self.config.model_dump(mode="json"),
            "tensorboard_run": self.tensorboard.run_name if self.tensorboard else None,
            "unet_core_version": __version__,
            "precision": self.precision.resolved.record(),
        }
        if len(rank_states) > 1:
            state["rank_states"] = rank_states
        return state

    def resume_from(self, ckpt: dict[str, Any], source: str) -> None:
        """Restore model, optimizer, scheduler, scaler, counters, best score and RNG streams."""
        if "optimizer_state_dict" not in ckpt or "num_iterations" not in ckpt:
            raise CheckpointError(
                f"{source} holds model weights only (no optimizer state or iteration counter), "
                "so training cannot resume from it. Use it as trainer.pre_trained (weights only, "
                "counters start afresh) or resume from a last_checkpoint.pytorch."
            )
        load_model_weights(self.model, ckpt, model_config=self.config.model.dump(), source=source)
        _check_same_optimizer(ckpt, self.config, source)
        try:
            self.optimizer.load_state_dict(ckpt["optimizer_state_dict"])
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(
                f"The optimizer state in {source} does not fit the configured optimizer "
                f"({self.config.optimizer.name}): {str(exc).splitlines()[0]}. Resume "
                "with the optimizer section the checkpoint was trained with, or start from its "
                "weights with trainer.pre_trained instead of resume."
            ) from None
        self._load_optional("scheduler_state_dict", self.scheduler, ckpt, source)
        self._load_optional("scaler_state_dict", self.precision.scaler, ckpt, source)
        self.iteration = int(ckpt["num_iterations"])
        self.saved_iteration = self.iteration
        best = ckpt.get("best_eval_score")
        if best is not None:
            self.best_eval_score = float(best)
        last = ckpt.get("last_eval_score")
        self.last_eval_score = None if last is None else float(last)
        if self.last_eval_score is not None and not math.isnan(self.last_eval_score):
            self.progress.score = self.last_eval_score
        self._replay = self._replay_plan(ckpt)

    def _replay_plan(self, ckpt: dict[str, Any]) -> dict[str, Any] | None:
        if "epoch" not in ckpt:  # a reference checkpoint: start epoch num_epochs afresh
            self.epoch = int(ckpt.get("num_epochs", 0))
            self.epoch_batches = 0
            return None
        self.epoch = int(ckpt["epoch"])
        batches = int(ckpt.get("epoch_batches", 0))
        states = ckpt.get("rank_states")
        same_world = int(ckpt.get("world_size", 1)) == self.ctx.world_size
        if states is not None and same_world:
            mine = states[self.ctx.rank]
        elif same_world:
            mine = {
                "rng_state": ckpt.get("rng_state"),
                "epoch_rng_state": ckpt.get("epoch_rng_state"),
            }
        else:
            mine = None
        if mine is None or mine.get("rng_state") is None or mine.get("epoch_rng_state") is None:
            if batches:
                self.epoch += 1
                self.progress.message(
                    "The checkpoint was written by a run with another number of processes: "
                    f"continuing with a new epoch ({self.epoch}) instead of mid-epoch."
                )
            self.epoch_batches = 0
            return None
        self.epoch_batches = batches
        return {
            "epoch_batches": batches,
            "epoch_rng": mine["epoch_rng_state"],
            "rng_state": mine["rng_state"],
        }

    @staticmethod
    def _load_optional(key: str, target: Any, ckpt: dict[str, Any], source: str) -> None:
        state = ckpt.get(key)
        if target is None or state is None or not hasattr(target, "load_state_dict"):
            return
        try:
            target.load_state_dict(state)
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(
                f"The {key.removesuffix('_state_dict')} state in {source} does not fit the "
                f"configured one: {str(exc).splitlines()[0]}. Use the lr_scheduler / trainer.amp "
                "settings the checkpoint was trained with."
            ) from None


def _gather(obj: dict[str, Any], ctx: dist.DistContext) -> list[dict[str, Any]]:
    if not ctx.enabled:
        return [obj]
    import torch.distributed as tdist

    out: list[Any] = [None] * ctx.world_size
    tdist.all_gather_object(out, obj)
    return out


def _check_same_optimizer(ckpt: dict[str, Any], config: ExperimentConfig, source: str) -> None:
    saved = ckpt.get("config")
    if not isinstance(saved, dict):
        return
    before = (saved.get("optimizer") or {}).get("name")
    now = config.optimizer.name
    if before and now and before != now:
        raise CheckpointError(
            f"{source} was trained with optimizer {before}, but the config asks for {now}; "
            "its optimizer state cannot continue under another algorithm. Set optimizer.name "
            f"to {before} to resume, or use trainer.pre_trained to start {now} from its weights."
        )
