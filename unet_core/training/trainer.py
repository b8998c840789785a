"""The training loop, with the reference's semantics (REFERENCE.md §9) and its bugs fixed.

Counting: ``iteration`` is the number of optimiser steps done. Step ``k`` validates (and
checkpoints, and steps the LR scheduler, ``ReduceLROnPlateau`` with the score) when
``k % validate_after_iters == 0`` and logs training stats/images when ``k % log_after_iters
== 0``. Deliberate differences from the reference (§12.24):

* training stops after exactly ``max_num_iterations`` steps (the reference does one more);
* a resumed run continues with step ``k + 1``: it neither repeats step ``k``'s validation nor
  starts a new epoch; the data order, augmentation and RNG streams continue as if never stopped;
* the learning-rate floor is ``trainer.min_lr`` (default 1e-6, the reference's constant);
* ``train_loss_avg``/``train_eval_score_avg`` average the batches since the previous log;
* a final ``last_checkpoint.pytorch`` is written when training ends between validations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.contracts import declared
from unet_core.engine.amp import Precision, to_format
from unet_core.engine.interrupts import InterruptGuard, TrainingInterrupted
from unet_core.engine.precision import announce
from unet_core.engine.progress import Progress
from unet_core.errors import DataError, TrainingError
from unet_core.training import data_order
from unet_core.training import distributed as dist
from unet_core.training.components import Components
from unet_core.training.run_folder import BEST, LAST, RunFolder, claim, emit
from unet_core.training.snapshots import CheckpointWriter, set_rng_state
from unet_core.training.trainstate import TrainState
from unet_core.training.validation import Evaluation

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import TrainerConfig
    from unet_core.training.tensorboard import TensorBoardLogger

__all__ = ["BEST", "LAST", "Trainer"]


class Trainer(Evaluation, TrainState):
    """Runs the loop; :meth:`fit` returns when a stopping rule is met (see ``stop_reason``)."""

    def __init__(
        self,
        parts: Components,
        *,
        tensorboard: TensorBoardLogger | None,
        progress: Progress,
        hooks: Any,
    ) -> None:
        tcfg = parts.config.trainer
        assert tcfg is not None
        self.parts = parts
        self.tcfg: TrainerConfig = tcfg
        self.config = parts.config
        self.model = parts.model
        self.optimizer = parts.optimizer
        self.scheduler = parts.scheduler
        self.device = parts.device
        self.ctx = parts.ctx
        self.checkpoint_dir = parts.checkpoint_dir
        self.precision = Precision(tcfg.amp, parts.device)
        self.tensorboard = tensorboard
        self.progress = progress
        self.hooks = hooks
        self.writer = CheckpointWriter()
        #: The claimed (locked) run folder on rank 0 while the run lives; None elsewhere.
        self.run_folder: RunFolder | None = None
        #: The checkpoint this run was resumed from (None for a new run).
        self.resumed_from: str | None = None
        self._format = to_format(parts.memory_format)
        self.attach(parts)
        self._is_2d = declared("models", parts.model, "spatial_dims") == 2
        self._needs_closure = bool(declared("optimizers", parts.optimizer, "needs_closure"))
        self.max_iterations = tcfg.max_num_iterations
        self.max_epochs = tcfg.max_num_epochs
        self.iteration = tcfg.num_iterations - 1
        self.epoch = tcfg.num_epoch
        self.epoch_batches = 0
        self.higher_is_better = parts.higher_is_better
        self.best_eval_score = -math.inf if parts.higher_is_better else math.inf
        self.last_eval_score: float | None = None
        self.val_history: list[tuple[int, float, float]] = []
        self.samples_seen = 0  # samples this process trained on (not checkpointed)
        self.stop_reason = ""
        self.saved_iteration: int | None = None
        self._window: list[tuple[float, int]] = []
        self._scores: list[tuple[float, int]] = []
        self._guard = InterruptGuard()
        self._stop = False  # a stop all ranks agreed on
        self._replay: dict[str, Any] | None = None
        self._epoch_rng: dict[str, Any] = {}

    def attach(self, parts: Components) -> None:
        """Take up the forward functions (DDP/compiled) once they are built."""
        self.parts = parts
        # `is None`, not `or`: a compiled module's truth value asks for len()
        self._train_forward: Callable[[torch.Tensor], Any] = (
            parts.model if parts.train_forward is None else parts.train_forward
        )
        default_eval: Callable[[torch.Tensor], Any] = (
            declared("models", parts.model, "logits") or parts.model
        )
        self._eval_logits: Callable[[torch.Tensor], Any] = (
            default_eval if parts.eval_logits is None else parts.eval_logits
        )

    # -- public paths -------------------------------------------------------------------------
    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / LAST

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / BEST

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    @property
    def rank(self) -> int:
        return self.ctx.rank

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    # -- the loop -----------------------------------------------------------------------------
    def fit(self) -> Trainer:
        """Train until max_num_iterations, max_num_epochs or the LR floor; returns self.

        A trainer built without a claimed run folder (``build_trainer`` alone) claims
        ``checkpoint_dir`` here, before the first step, and releases it at the end.
        """
        own = None
        if self.run_folder is None and self.is_main:
            own = claim(self.checkpoint_dir, resume=self.resumed_from)
            emit(own.notes)
            own.start(
                self.config,
                resumed_from=self.resumed_from,
                precision=self.precision.resolved.record(),
            )
            self.run_folder = own
        try:
            return self._fit()
        finally:
            if own is not None:
                own.release()
                self.run_folder = None

    def _fit(self) -> Trainer:
        self.model.train()
        with self._guard:
            if self.is_main:
                announce(self.precision.resolved)
            self.hooks.unet_train_start(trainer=self, config=self.config)
            self.progress.start(self.max_iterations, self.iteration)
            try:
                self.stop_reason = self._run()
                if self.saved_iteration != self.iteration:
                    self.save_checkpoint(is_best=False)
                self._drain_writes(wait=True)
            except BaseException:
                self._finish_writes_quietly()
                raise
            finally:
                self.progress.close()
                if self.tensorboard is not None:
                    self.tensorboard.close()
        self.progress.message(f"Training stopped: {self.stop_reason}.")
        self.hooks.unet_train_end(
            trainer=self, iteration=self.iteration, best_score=self._best_or_none()
        )
        return self

    def _run(self) -> str:
        if self.iteration >= self.max_iterations:
            return f"max_num_iterations ({self.max_iterations}) already reached"
        while self.epoch < self.max_epochs:
            for batch in self._epoch_batches():
                self.epoch_batches += 1
                reason = self._iteration(batch)
                if reason:
                    return reason
            self.epoch += 1
            self.epoch_batches = 0
        return f"max_num_epochs ({self.max_epochs}) reached"

    def _epoch_batches(self) -> Iterator[Any]:
        """The train loader's batches for this epoch; after a resume, continues mid-epoch."""
        loader = self.parts.loaders["train"]
        dist.set_epoch(loader, self.epoch)
        replay, self._replay = self._replay, None
        if replay is not None:
            data_order.restore(loader, replay["epoch_rng"])
        self._epoch_rng = data_order.capture(loader)
        it = iter(loader)
        if replay is not None:
            skip = replay["epoch_batches"]
            if skip:
                self.progress.message(
                    f"Resuming mid-epoch: re-reading {skip} batch(es) of epoch {self.epoch} "
                    "to restore the exact data order."
                )
            for _ in range(skip):
                if next(it, None) is None:
                    break
            self.epoch_batches = skip
            set_rng_state(replay["rng_state"])
        yield from it

    def _iteration(self, batch: Any) -> str:
        x, y, w = self._split(batch)
        loss_value, logits = self._step(x, y, w)
        self.iteration += 1
        self.samples_seen += int(x.shape[0])
        self._window.append((loss_value, int(x.shape[0])))
        self.hooks.unet_after_iteration(trainer=self, iteration=self.iteration, loss=loss_value)
        self.progress.step(self.iteration, loss_value)
        self._drain_writes(wait=False)
        if self.iteration % self.tcfg.validate_after_iters == 0:
            self._validate_and_checkpoint()
        if self.iteration % self.tcfg.log_after_iters == 0:
            self._log_train(x, y, logits)
        if self._stop or (not self.ctx.enabled and self._guard.requested):
            self._stop_on_signal()
        if self.iteration >= self.max_iterations:
            return f"max_num_iterations ({self.max_iterations}) reached"
        if self.learning_rate < self.tcfg.min_lr:
            return f"learning rate {self.learning_rate:.3g} below trainer.min_lr {self.tcfg.min_lr}"
        return ""

    def _split(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not isinstance(batch, (list, tuple)) or len(batch) not in (2, 3):
            raise DataError(
                "Training batches must be (input, target) or (input, target, weight); the "
                f"train loader gave {type(batch).__name__}. Check loaders.dataset."
            )
        x = self._format(batch[0].to(self.device, non_blocking=True))
        y = batch[1].to(self.device, non_blocking=True)
        w = batch[2].to(self.device, non_blocking=True) if len(batch) == 3 else None
        return x, y, w

    def _forward(self, net: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Any:
        if not self._is_2d:
            return net(x)
        if x.dim() != 5 or x.shape[-3] != 1:
            raise DataError(
                f"The model is 2D but the input batch has shape {tuple(x.shape)}; expected "
                "(N, C, 1, Y, X) patches with a singleton z. Set the slice_builder patch_shape "
                "to [1, Y, X] (and stride_shape [1, ...])."
            )
        return net(x.squeeze(-3)).unsqueeze(-3)

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> Any:
        logits = logits.float()
        return self.parts.loss(logits, y) if w is None else self.parts.loss(logits, y, w)

    def _step(
        self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None
    ) -> tuple[float, torch.Tensor]:
        if self._needs_closure:
            return self._closure_step(x, y, w)
        self.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            logits = self._forward(self._train_forward, x)
        loss = self._loss(logits, y, w)
        loss_value = float(loss.detach())
        self._check_finite(loss_value)
        self.precision.backward_and_step(loss, self.optimizer)
        return loss_value, logits

    def _closure_step(
        self, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None
    ) -> tuple[float, torch.Tensor]:
        """LBFGS re-evaluates the loss: step with a closure (the reference could not)."""
        kept: dict[str, Any] = {}

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            with self.precision.autocast():
                kept["logits"] = self._forward(self._train_forward, x)
            loss = self._loss(kept["logits"], y, w)
            if "loss" not in kept:
                kept["loss"] = float(loss.detach())
                self._check_finite(kept["loss"])
            loss.backward()
            return loss  # type: ignore[no-any-return]

        self.optimizer.step(closure)  # type: ignore[arg-type]
        return kept["loss"], kept["logits"]

    def _check_finite(self, loss_value: float) -> None:
        """Stop on a NaN/inf loss before it reaches the weights (all ranks agree under DDP)."""
        bad = not math.isfinite(loss_value)
        bad, stop = dist.any_rank([bad, self._guard.requested], self.ctx, self.device)
        if stop:
            self._stop = True
            if self._guard.signum is None:
                self._guard.signum = 15  # another rank got SIGTERM: stop together
        if not bad:
            return
        step = self.iteration + 1
        kept = (
            f"The last good checkpoint ({self.saved_iteration} iterations) is "
            f"{self.last_checkpoint} and was left unchanged."
            if self.saved_iteration is not None
            else "No checkpoint was written yet."
        )
        raise TrainingError(
            f"The training loss became {'NaN' if math.isnan(loss_value) else loss_value} at "
            f"iteration {step} (epoch {self.epoch}); training stopped before the weights were "
            f"updated. {kept} Usual causes: a learning rate too high for this model (lower "
            f"optimizer.learning_rate, now {self.learning_rate:g}), unnormalized or NaN input "
            "(add Standardize to the raw transforms, check the data), a target outside the "
            "loss's range, or fp16 overflow (use trainer.amp: bf16 or none)."
        )

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, *, is_best: bool) -> None:
        """Queue last (and best) checkpoint writes of the current state (rank 0 only)."""
        self.saved_iteration = self.iteration
        rank_states = self.gather_rng()
        if not self.is_main:
            return
        state = self.state_dict(rank_states)
        targets = [(self.last_checkpoint, False)]
        if is_best:
            targets.append((self.best_checkpoint, True))
        self._drain_writes(wait=True)
        self.writer.submit(state, targets)

    def _drain_writes(self, *, wait: bool) -> None:
        done = self.writer.wait() if wait else self.writer.poll()
        for path, is_best in done:
            self.hooks.unet_checkpoint_saved(trainer=self, path=str(path), is_best=is_best)

    def _finish_writes_quietly(self) -> None:
        """On the way out with an error: let a checkpoint in flight land, without masking it."""
        try:
            self._drain_writes(wait=True)
        except Exception:  # noqa: BLE001 - the error already propagating matters more
            pass

    def _stop_on_signal(self) -> None:
        if self.saved_iteration != self.iteration:
            self.save_checkpoint(is_best=False)
        self._drain_writes(wait=True)
        self.progress.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        signum = self._guard.signum or 15
        where = f"{self.last_checkpoint}" if self.is_main else "rank 0's checkpoint_dir"
        raise TrainingInterrupted(
            f"Training stopped by {self._guard.name or 'a signal'} at iteration {self.iteration} "
            f"(epoch {self.epoch}); the checkpoint {where} holds this state. Continue with "
            f"`unet train --config <config> --resume {self.last_checkpoint}`.",
            signum,
        )
