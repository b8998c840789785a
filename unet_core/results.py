"""What the public ``train`` and ``predict`` return: plain typed records, no engine objects.

Scripts and notebooks read paths and numbers from these instead of poking at a Trainer, so
the engines can change inside without breaking callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unet_core.engine.prediction_output import Written
    from unet_core.engine.trainer import Trainer


@dataclass(frozen=True)
class TrainResult:
    """A finished (or stopped) training run."""

    checkpoint_dir: Path
    last_checkpoint: Path
    #: None when no validation ran, so no best model was chosen
    best_checkpoint: Path | None
    #: the best validation score (None when no validation ran)
    best_score: float | None
    higher_is_better: bool
    iterations: int
    epochs: int
    stop_reason: str

    @classmethod
    def from_trainer(cls, trainer: Trainer) -> TrainResult:
        best = trainer.best_checkpoint
        score = trainer.best_eval_score
        return cls(
            checkpoint_dir=Path(trainer.checkpoint_dir),
            last_checkpoint=Path(trainer.last_checkpoint),
            best_checkpoint=Path(best) if Path(best).is_file() else None,
            best_score=float(score) if abs(float(score)) != float("inf") else None,
            higher_is_better=bool(trainer.higher_is_better),
            iterations=int(trainer.iteration),
            epochs=int(trainer.epoch),
            stop_reason=str(trainer.stop_reason),
        )


@dataclass(frozen=True)
class PredictedFile:
    """One output file: where it is, what it was predicted from, what it holds."""

    path: Path
    source: Path | None
    datasets: tuple[str, ...]
    #: the predictor's score against ground truth, when it was asked to compute one
    metrics: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_written(cls, item: Written) -> PredictedFile:
        return cls(
            path=Path(item.path),
            source=Path(item.source) if item.source else None,
            datasets=tuple(item.datasets),
            metrics=item.metrics,
            stats=dict(item.stats),
        )


@dataclass(frozen=True)
class PredictResult:
    """Every file a prediction wrote, in input order."""

    files: tuple[PredictedFile, ...]

    @property
    def paths(self) -> list[Path]:
        return [f.path for f in self.files]
