"""Metrics on degenerate inputs are defined and documented (issue 13, class 8).

Every expected value below is worked out by hand in the comment next to it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unet_core import registry
from unet_core.errors import ConfigError


def create(name: str, **params):
    return registry.create("metrics", {"name": name, **params})


# -- Dice ----------------------------------------------------------------------------------------
def test_dice_of_two_empty_masks_is_one_like_mean_iou() -> None:
    zeros = torch.zeros(1, 1, 2, 3, 3)
    assert create("DiceCoefficient")(zeros, zeros).item() == 1.0
    assert create("MeanIoU")(zeros, zeros).item() == pytest.approx(1.0)  # the same convention
    assert create("DiceCoefficient", empty_score="reference")(zeros, zeros).item() == 0.0


def test_dice_empty_channel_beside_a_scored_one() -> None:
    # channel 0: empty in both -> 1; channel 1: p = [1, 1, 0, 0], t = [1, 0, 0, 0]
    # -> 2 * 1 / (2 + 1) = 2/3; mean (1 + 2/3) / 2 = 5/6
    p = torch.zeros(1, 2, 1, 1, 4)
    t = torch.zeros(1, 2, 1, 1, 4)
    p[0, 1, 0, 0, :2] = 1.0
    t[0, 1, 0, 0, 0] = 1.0
    assert create("DiceCoefficient")(p, t).item() == pytest.approx(5 / 6)
    assert create("DiceCoefficient", empty_score="reference")(p, t).item() == pytest.approx(1 / 3)
    # t empty, p = 0.5 everywhere: 2 * 0 / (4 * 0.25) = 0 (something found, nothing there)
    half = torch.full((1, 1, 1, 1, 4), 0.5)
    assert create("DiceCoefficient")(half, torch.zeros_like(half)).item() == 0.0


def test_empty_score_is_validated() -> None:
    with pytest.raises(ConfigError, match="empty_score.*'one' or 'reference'"):
        create("DiceCoefficient", empty_score="zero")
    with pytest.raises(ConfigError, match="empty_target.*'skip' or 'reference'"):
        create("AdaptedRandError", empty_target="zero")


# -- adapted Rand error ------------------------------------------------------------------------
def labels(*values: int) -> np.ndarray:
    """A (1, 1, 1, 1, X) batch of labels."""
    return np.array(values, dtype=np.int64).reshape(1, 1, 1, 1, -1)


def test_adapted_rand_of_an_all_background_target_is_undefined() -> None:
    seg = labels(1, 1, 2, 2)
    empty = labels(0, 0, 0, 0)
    assert math.isnan(create("AdaptedRandError")(seg, empty))
    assert create("AdaptedRandError", empty_target="reference")(seg, empty) == 0.0  # "perfect"


def test_undefined_samples_are_left_out_of_the_batch_mean() -> None:
    # gt [1, 1, 2, 2] vs one segment [1, 1, 1, 1]: pairs sharing a label, counted over
    # ordered pairs of distinct voxels: both 4, gt 4, seg 12 -> precision 4/12, recall 4/4,
    # F = 2 (1/3)(1) / (4/3) = 1/2, error 1/2. The all-background sample does not count.
    seg = np.concatenate([labels(1, 1, 1, 1), labels(1, 1, 1, 1)])
    gt = np.concatenate([labels(1, 1, 2, 2), labels(0, 0, 0, 0)])
    assert create("AdaptedRandError")(seg, gt) == pytest.approx(0.5)
    # the reference averaged a 0.0 for the empty sample in: (0.5 + 0) / 2
    assert create("AdaptedRandError", empty_target="reference")(seg, gt) == pytest.approx(0.25)


def test_a_single_object_target_is_scored() -> None:
    # gt one object [3, 3, 3, 3] split by seg [1, 1, 2, 2]: both 4, gt 12, seg 4 -> error 1/2;
    # the reference called any single-label target perfect (0.0)
    seg, gt = labels(1, 1, 2, 2), labels(3, 3, 3, 3)
    assert create("AdaptedRandError")(seg, gt) == pytest.approx(0.5)
    assert create("AdaptedRandError", empty_target="reference")(seg, gt) == 0.0
    assert create("AdaptedRandError")(gt, gt) == 0.0  # found exactly


def test_undefined_batch_scores_are_left_out_of_validation() -> None:
    """The trainer's rule: batches with a NaN score do not count; none counting is an error."""
    from unet_core.errors import TrainingError
    from unet_core.training.distributed import DistContext
    from unet_core.training.validation import Evaluation

    class Parts:
        metric = create("BoundaryAdaptedRandError")
        loaders = {"val": "a loader"}

    class Probe(Evaluation):
        """Validation with the sums a loader gave: (score, loss, samples, scored samples)."""

        def __init__(self, sums: list[float]) -> None:
            self.parts = Parts()  # type: ignore[assignment]
            self.iteration, self.sums = 7, sums
            self.device, self.ctx = torch.device("cpu"), DistContext()

        def _validation_sums(self, loader: object) -> tuple[list[float], bool]:
            return self.sums, False

    # two of four samples scored (0.5 and 1.0 -> 0.75); the loss counts all four
    assert Probe([1.5, 4.0, 4.0, 2.0]).validate() == (0.75, 1.0)
    with pytest.raises(TrainingError, match=r"undefined \(NaN\) on every validation batch"):
        Probe([0.0, 4.0, 4.0, 0.0]).validate()
