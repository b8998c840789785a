"""Validation passes and training-time logging, as the reference does them (§9).

Validation runs under ``torch.inference_mode`` in eval mode, weights loss and score by batch
size, stops after batch index ``validate_iters`` and is reduced across ranks under DDP. It runs
inside ``torch.random.fork_rng`` so it never shifts the training RNG streams (a resumed run,
which skips the validation it resumed after, stays in step). The scheduler steps once per
validation, ``ReduceLROnPlateau`` (``needs_metric``) with the score.

A batch on which the metric is undefined (NaN, e.g. adapted Rand error of an all-background
target) does not count toward the score; its loss does. If no batch has a score, training stops
with an error instead of ranking checkpoints by NaN.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from unet_core.contracts import declared
from unet_core.engine import distributed as dist
from unet_core.errors import DataError, TrainingError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import TrainerConfig
    from unet_core.engine.amp import Precision
    from unet_core.engine.components import Components
    from unet_core.engine.interrupts import InterruptGuard
    from unet_core.engine.progress import Progress
    from unet_core.engine.tensorboard import TensorBoardLogger


class Evaluation:
    """Mixin of :class:`~unet_core.engine.trainer.Trainer`: validation, scores, logging."""

    parts: Components
    tcfg: TrainerConfig
    model: torch.nn.Module
    scheduler: Any
    device: torch.device
    ctx: dist.DistContext
    precision: Precision
    tensorboard: TensorBoardLogger | None
    progress: Progress
    hooks: Any
    iteration: int
    best_eval_score: float
    last_eval_score: float | None
    higher_is_better: bool
    val_history: list[tuple[int, float, float]]
    _guard: InterruptGuard
    _stop: bool
    _window: list[tuple[float, int]]
    _scores: list[tuple[float, int]]
    _eval_logits: Callable[[torch.Tensor], Any]

    def _split(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _forward(self, net: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
        raise NotImplementedError

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None) -> Any:
        raise NotImplementedError

    def save_checkpoint(self, *, is_best: bool) -> None:
        raise NotImplementedError

    @property
    def learning_rate(self) -> float:
        raise NotImplementedError

    # -- validation -----------------------------------------------------------------------------
    def validate(self) -> tuple[float, float]:
        """Mean (score, loss) over the validation loader, reduced across ranks."""
        import torch

        loader = self.parts.loaders.get("val")
        if loader is None:
            raise DataError("Training needs a validation loader: add loaders.val to the config.")
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            sums, interrupted = self._validation_sums(loader)
        *sums, flag = dist.all_reduce_sum([*sums, float(interrupted)], self.ctx, self.device)
        if flag:
            self._stop = True
            return math.nan, math.nan
        if sums[2] == 0:
            raise DataError("The validation loader gave no batches; check loaders.val.file_paths.")
        if sums[3] == 0:
            raise self._undefined_score()
        if sums[3] < sums[2]:
            log.info(
                "validation: the metric is undefined on %d of %d samples; they are left out of "
                "the score",
                int(sums[2] - sums[3]),
                int(sums[2]),
            )
        return sums[0] / sums[3], sums[1] / sums[2]

    def _undefined_score(self) -> TrainingError:
        name = type(self.parts.metric).__name__
        saved = getattr(self, "saved_iteration", None)
        kept = (
            f"The last checkpoint ({saved} iterations) was left unchanged."
            if saved is not None
            else "No checkpoint was written yet."
        )
        return TrainingError(
            f"The validation metric {name} was undefined (NaN) on every validation batch at "
            f"iteration {self.iteration}, so it cannot tell whether this model is the best so "
            f"far. {kept} Choose an eval_metric that is defined on this data (adapted Rand "
            "error needs labelled voxels in the target), or validate on files (loaders.val) "
            "whose patches hold objects, or check the predictions for NaN."
        )

    def _validation_sums(self, loader: Any) -> tuple[list[float], bool]:
        import torch

        self.model.eval()
        sums = [0.0, 0.0, 0.0, 0.0]  # score, loss, samples, samples with a defined score
        chosen = self._image_batches(len(loader))
        interrupted = False
        try:
            with torch.inference_mode():
                for i, batch in enumerate(loader):
                    x, y, w = self._split(batch)
                    with self.precision.autocast():
                        logits = self._forward(self._eval_logits, x).float()
                    loss = float(self._loss(logits, y, w))
                    probs = self._activation(logits)
                    score = float(self.parts.metric(probs, y))
                    n = int(x.shape[0])
                    scored = 0 if math.isnan(score) else n
                    sums = [
                        sums[0] + (score * n if scored else 0.0),
                        sums[1] + loss * n,
                        sums[2] + n,
                        sums[3] + scored,
                    ]
                    if i in chosen:
                        self._log_images(f"val_{i}_", x, y, probs)
                    if self.tcfg.validate_iters is not None and i >= self.tcfg.validate_iters:
                        break
                    if self._guard.requested:
                        interrupted = True
                        break
        finally:
            self.model.train()
        return sums, interrupted

    def _activation(self, logits: torch.Tensor) -> torch.Tensor:
        act = declared("models", self.model, "final_activation")
        return act(logits) if callable(act) else logits

    def _image_batches(self, count: int) -> set[int]:
        if self.tensorboard is None or not self.tcfg.log_images:
            return set()
        if count <= self.tcfg.max_val_images:
            return set(range(count))
        rs = np.random.RandomState(42)  # the reference's choice of batches
        return {int(i) for i in rs.choice(count, size=self.tcfg.max_val_images, replace=False)}

    def _validate_and_checkpoint(self) -> None:
        if self._stop:
            return  # stopping on a signal: save at once rather than validate first
        score, loss = self.validate()
        if self._stop:
            return  # interrupted: the signal path saves a checkpoint
        self.last_eval_score = score
        self.val_history.append((self.iteration, score, loss))
        if self.scheduler is not None:
            if _needs_metric(self.scheduler, self.parts.scheduler_needs_metric):
                self.scheduler.step(score)
            else:
                self.scheduler.step()
        is_best = self._is_better(score)
        if is_best:
            self.best_eval_score = score
        if self.tensorboard is not None:
            self.tensorboard.scalars(
                {"val_loss_avg": loss, "val_eval_score_avg": score}, self.iteration
            )
            self.tensorboard.scalars({"learning_rate": self.learning_rate}, self.iteration)
        self.progress.validated(self.iteration, score, loss, is_best)
        self.hooks.unet_after_validation(
            trainer=self, iteration=self.iteration, score=score, loss=loss
        )
        self.save_checkpoint(is_best=is_best)

    def _is_better(self, score: float) -> bool:
        if math.isnan(score):
            return False
        if self.higher_is_better:
            return score > self.best_eval_score
        return score < self.best_eval_score

    def _best_or_none(self) -> float | None:
        return None if math.isinf(self.best_eval_score) else self.best_eval_score

    # -- logging --------------------------------------------------------------------------------
    def _log_train(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> None:
        import torch

        with torch.no_grad():
            probs = self._activation(logits.detach().float())
            if not self.tcfg.skip_train_validation:
                score = float(self.parts.metric(probs, y))
                if not math.isnan(score):  # undefined on this batch: left out of the mean
                    self._scores.append((score, int(x.shape[0])))
        loss_avg = _weighted_mean(self._window)
        score_avg = _weighted_mean(self._scores)
        self._window, self._scores = [], []
        if self.tensorboard is not None:
            self.tensorboard.scalars(
                {"train_loss_avg": loss_avg, "train_eval_score_avg": score_avg}, self.iteration
            )
            self._log_images("train_", x, y, probs)

    def _log_images(
        self, prefix: str, x: torch.Tensor, y: torch.Tensor, probs: torch.Tensor
    ) -> None:
        if self.tensorboard is None or not self.tcfg.log_images:
            return
        batches = {
            "inputs": _numpy(x),
            "targets": _numpy(y),
            "predictions": _numpy(probs),
        }
        self.tensorboard.images(prefix, batches, self.iteration)


def _needs_metric(scheduler: Any, declared_flag: bool | None) -> bool:
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    if declared_flag is not None:
        return declared_flag
    return bool(declared("lr_schedulers", scheduler, "needs_metric")) or isinstance(
        scheduler, ReduceLROnPlateau
    )


def _weighted_mean(pairs: list[tuple[float, int]]) -> float | None:
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else None


def _numpy(t: torch.Tensor) -> np.ndarray:
    import torch

    t = t.detach()
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return np.asarray(t.cpu().numpy())
