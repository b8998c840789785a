"""Built-in losses: hand-computed values, masking, wrappers, target checks, config checks.

Hand values use tiny tensors whose arithmetic is written out next to each assertion; random
cases are checked against independent numpy formulas; a few values computed by pytorch-3dunet
1.9.6 itself are pinned in ``REFERENCE_VALUES``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_core import registry
from unet_core.errors import ConfigError, DataError

LN2, LN3, LN4 = math.log(2), math.log(3), math.log(4)


def make(name: str, **params):
    return registry.create("losses", {"name": name, **params})


def vol(values, channels: int | None = 1) -> torch.Tensor:
    """A flat list as (1, C, 1, 1, X) (or (1, 1, 1, X) class indices when channels is None)."""
    t = torch.tensor(values)
    if channels is None:
        return t.reshape(1, 1, 1, -1)
    return t.reshape(1, channels, 1, 1, -1)


def rand_case(seed: int, c: int = 2, shape=(2, 3, 4, 5)):
    g = torch.Generator().manual_seed(seed)
    n, *spatial = shape
    x = torch.randn((n, c, *spatial), generator=g) * 2
    t = (torch.rand((n, c, *spatial), generator=g) > 0.6).float()
    return x, t


def sigmoid_np(x):
    return 1 / (1 + np.exp(-x))


def channel_sums_np(a, mask=None):
    """Per-channel sums over all axes but 1."""
    if mask is not None:
        a = a * mask
    return a.sum(axis=tuple(i for i in range(a.ndim) if i != 1))


# ------------------------------------------------------------------ hand-computed values
def test_bce_hand_values():
    # sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75; targets 1, 0:
    # (-ln 0.5 - ln(1 - 0.75)) / 2 = (ln 2 + 2 ln 2) / 2 = 1.5 ln 2
    loss = make("BCEWithLogitsLoss")(vol([0.0, LN3]), vol([1.0, 0.0]))
    assert loss.item() == pytest.approx(1.5 * LN2, abs=1e-6)


def test_bce_pos_weight_scalar_and_per_channel():
    x = torch.zeros(1, 2, 1, 1, 3)  # p = 0.5 everywhere, each positive costs ln 2
    t = torch.ones(1, 2, 1, 1, 3)
    # scalar 3: every element 3 ln 2
    assert make("BCEWithLogitsLoss", pos_weight=3.0)(x, t).item() == pytest.approx(3 * LN2)
    # one per channel (X = 3 differs from C = 2, so a last-axis broadcast would fail):
    # mean of (2 ln2 for 3 voxels, 4 ln2 for 3 voxels) = 3 ln 2
    loss = make("BCEWithLogitsLoss", pos_weight=[2.0, 4.0])(x, t)
    assert loss.item() == pytest.approx(3 * LN2, abs=1e-6)
    # negatives are not affected by pos_weight: target 0 costs ln 2 whatever the weight
    assert make("BCEWithLogitsLoss", pos_weight=[2.0, 4.0])(x, 0 * t).item() == pytest.approx(LN2)


NESTED_POS_WEIGHT = [[[[2.0]]], [[[1.0]]], [[[0.5]]]]  # shape (C, 1, 1, 1), as the reference


def test_bce_nested_pos_weight_as_the_reference_writes_it():
    # hand value: logits 0 (p = 0.5), all targets 1, X = 2 voxels per channel: each positive
    # costs w_c ln 2 -> mean of (2, 2, 1, 1, 0.5, 0.5) ln 2 = 3.5/3 ln 2
    x, t = torch.zeros(1, 3, 1, 1, 2), torch.ones(1, 3, 1, 1, 2)
    loss = make("BCEWithLogitsLoss", pos_weight=NESTED_POS_WEIGHT)
    assert loss(x, t).item() == pytest.approx(3.5 / 3 * LN2, abs=1e-6)
    # random logits: torch's own BCEWithLogitsLoss with that pos_weight (what the reference does)
    x, t = rand_case(21, c=3)
    torch_loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(NESTED_POS_WEIGHT))
    expected = torch_loss(x, t).item()
    assert loss(x, t).item() == pytest.approx(expected, rel=1e-6)
    assert make("BCEWithLogitsLoss", pos_weight=[2.0, 1.0, 0.5])(x, t).item() == pytest.approx(
        expected, rel=1e-6
    )  # the flat per-channel form means the same
    dice = make("BCEDiceLoss", alpha=0.0, pos_weight=NESTED_POS_WEIGHT)
    assert dice(x, t).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "pos_weight",
    [
        [[[[2.0, 0.5, 1.0, 3.0, 0.7]]]],  # (1, 1, 1, X): the last axis, as torch broadcasts it
        [[[3.0]], [[1.0]], [[0.2]]],  # (Z, 1, 1)
        [[[[[2.0]]], [[[1.0]]], [[[0.5]]]]],  # (1, C, 1, 1, 1)
    ],
)
def test_bce_every_broadcasting_pos_weight_gives_torchs_value(pos_weight):
    x, t = rand_case(22, c=3)  # (2, 3, 3, 4, 5)
    torch_loss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))
    got = make("BCEWithLogitsLoss", pos_weight=pos_weight)(x, t).item()
    assert got == pytest.approx(torch_loss(x, t).item(), rel=1e-6)


def test_bce_nested_pos_weight_that_does_not_broadcast_is_refused():
    with pytest.raises(ConfigError, match=r"shape \(2, 1, 1, 1\).*\(C, 1, 1, 1\)"):
        make("BCEWithLogitsLoss", pos_weight=[[[[2.0]]], [[[1.0]]]])(*rand_case(23, c=3))
    with pytest.raises(ConfigError, match="rectangular"):
        make("BCEWithLogitsLoss", pos_weight=[[1.0, 2.0], [3.0]])
    (problem,) = check("BCEWithLogitsLoss", {"out_channels": 3}, pos_weight=[[[[2.0]]]] * 2)
    assert "channel axis (2)" in problem and "model.out_channels 3" in problem
    assert check("BCEWithLogitsLoss", {"out_channels": 3}, pos_weight=NESTED_POS_WEIGHT) == []


def test_dice_hand_values():
    # normalization none: p = [1, .5, 0, 0], t = [1, 1, 0, 0]
    # Σpt = 1.5, Σp² = 1.25, Σt² = 2 -> dice = 3 / 3.25 = 12/13, loss = 1/13
    loss = make("DiceLoss", normalization="none")(vol([1.0, 0.5, 0, 0]), vol([1.0, 1, 0, 0]))
    assert loss.item() == pytest.approx(1 / 13, abs=1e-6)
    # sigmoid(0) = .5, t = [1, 0]: Σpt = .5, Σp² = .5, Σt² = 1 -> dice 2/3, loss 1/3
    assert make("DiceLoss")(vol([0.0, 0.0]), vol([1.0, 0.0])).item() == pytest.approx(1 / 3)


def test_dice_weight_and_softmax():
    # two channels, normalization none:
    # c0: p=[1,0] t=[1,0] -> dice 2*1/(1+1) = 1;  c1: p=[.5,.5] t=[0,1] -> 2*.5/(.5+1) = 2/3
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]]).reshape(1, 2, 1, 1, 2)
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]]).reshape(1, 2, 1, 1, 2)
    assert make("DiceLoss", normalization="none")(p, t).item() == pytest.approx(1 - (1 + 2 / 3) / 2)
    # weight [1, 0.5] multiplies the intersections: dice = [1, 1/3]
    loss = make("DiceLoss", normalization="none", weight=[1.0, 0.5])(p, t)
    assert loss.item() == pytest.approx(1 - (1 + 1 / 3) / 2, abs=1e-6)
    # softmax of equal logits gives .5/.5 in both channels: c0 t=[1,0]: 2*.5/(.5+1) = 2/3 = c1
    zero = torch.zeros(1, 2, 1, 1, 2)
    assert make("DiceLoss", normalization="softmax")(zero, t).item() == pytest.approx(1 / 3)


def test_dice_random_vs_numpy():
    x, t = rand_case(0, c=3)
    p, tn = sigmoid_np(x.double().numpy()), t.double().numpy()
    dice = 2 * channel_sums_np(p * tn) / (channel_sums_np(p * p) + channel_sums_np(tn * tn))
    assert make("DiceLoss")(x, t).item() == pytest.approx(1 - dice.mean(), abs=1e-6)


def test_bce_dice_alpha_beta():
    x, t = vol([0.0, 0.0]), vol([1.0, 0.0])
    # BCE = ln 2 (p = .5 everywhere), Dice loss = 1/3 (see test_dice_hand_values)
    assert make("BCEDiceLoss")(x, t).item() == pytest.approx(LN2 + 1 / 3)
    loss = make("BCEDiceLoss", alpha=0.5, beta=2.0)(x, t)
    assert loss.item() == pytest.approx(2 * LN2 + 0.5 / 3, abs=1e-6)


def test_generalized_dice_hand_values():
    # C = 1 is split into fg p=[1,.5,0,0] t=[1,1,0,0] and bg p=[0,.5,1,1] t=[0,0,1,1]
    # w_fg = 1/2² = 1/4, w_bg = 1/4; I = (1.5 + 2)/4; U = (3.5 + 4.5)/4 = 2
    # GDL = 2 I / U = 0.875 -> loss 0.125
    loss = make("GeneralizedDiceLoss", normalization="none")(
        vol([1.0, 0.5, 0, 0]), vol([1.0, 1, 0, 0])
    )
    assert loss.item() == pytest.approx(0.125, abs=1e-6)


def test_generalized_dice_random_vs_numpy():
    x, t = rand_case(1, c=3)
    p, tn = sigmoid_np(x.double().numpy()), t.double().numpy()
    w = 1 / np.maximum(channel_sums_np(tn) ** 2, 1e-6)
    gdl = 2 * (w * channel_sums_np(p * tn)).sum() / (w * channel_sums_np(p + tn)).sum()
    assert make("GeneralizedDiceLoss")(x, t).item() == pytest.approx(1 - gdl, abs=1e-6)


def two_class_logits(n: int) -> torch.Tensor:
    """Logits [0, ln 3] at every voxel: softmax = [0.25, 0.75]."""
    return torch.tensor([0.0, LN3]).reshape(1, 2, 1, 1, 1).expand(1, 2, 1, 1, n).clone()


def test_cross_entropy_hand_values():
    x, t = two_class_logits(2), vol([1, 0], channels=None)
    # -ln .75 = ln(4/3) for class 1, -ln .25 = ln 4 for class 0
    assert make("CrossEntropyLoss")(x, t).item() == pytest.approx((math.log(4 / 3) + LN4) / 2)
    # class weights: weighted mean (w1 ln(4/3) + w0 ln 4) / (w0 + w1)
    loss = make("CrossEntropyLoss", weight=[2.0, 0.5])(x, t)
    assert loss.item() == pytest.approx((0.5 * math.log(4 / 3) + 2 * LN4) / 2.5, abs=1e-6)
    # ignore_index 0 leaves only the class-1 voxel
    assert make("CrossEntropyLoss", ignore_index=0)(x, t).item() == pytest.approx(
        math.log(4 / 3), abs=1e-6
    )


def test_weighted_cross_entropy_hand_values():
    x, t = two_class_logits(2), vol([1, 0], channels=None)
    # class weights Σ(1-p_c)/Σp_c: class 0: 1.5/0.5 = 3, class 1: 0.5/1.5 = 1/3
    expected = (1 / 3 * math.log(4 / 3) + 3 * LN4) / (3 + 1 / 3)
    assert make("WeightedCrossEntropyLoss")(x, t).item() == pytest.approx(expected, abs=1e-6)
    # a fixed `weight` multiplies them: [3*2, 1/3*1]
    expected = (1 / 3 * math.log(4 / 3) + 6 * LN4) / (6 + 1 / 3)
    loss = make("WeightedCrossEntropyLoss", weight=[2.0, 1.0])(x, t)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_pixel_wise_cross_entropy_hand_values():
    x, t = two_class_logits(2), vol([1, 0], channels=None)
    w = torch.tensor([2.0, 0.5]).reshape(1, 1, 1, 2)
    loss = make("PixelWiseCrossEntropyLoss")
    # (2 ln(4/3) + 0.5 ln 4) / 2 voxels
    assert loss(x, t, w).item() == pytest.approx((2 * math.log(4 / 3) + 0.5 * LN4) / 2, abs=1e-6)
    # class weights [1, 3] scale the class-1 voxel: (2*3 ln(4/3) + 0.5 ln 4) / 2
    loss = make("PixelWiseCrossEntropyLoss", weight=[1.0, 3.0])
    assert loss(x, t, w).item() == pytest.approx((6 * math.log(4 / 3) + 0.5 * LN4) / 2, abs=1e-6)
    # ignore_index 0: only voxel 0 counts: 2 ln(4/3) / 1; a (N,1,Z,Y,X) map is accepted too
    loss = make("PixelWiseCrossEntropyLoss", ignore_index=0)
    assert loss(x, t, w.unsqueeze(1)).item() == pytest.approx(2 * math.log(4 / 3), abs=1e-6)


def test_regression_hand_values():
    out, t = vol([0.0, 3.0]), vol([1.0, 0.0])  # differences 1 and 3
    assert make("MSELoss")(out, t).item() == pytest.approx((1 + 9) / 2)
    assert make("L1Loss")(out, t).item() == pytest.approx((1 + 3) / 2)
    # beta 1: d=1 -> 1 - .5 = .5 (= .5*1²/1); d=3 -> 3 - .5 = 2.5
    assert make("SmoothL1Loss")(out, t).item() == pytest.approx((0.5 + 2.5) / 2)
    # beta 2: d=1 -> .5*1/2 = .25; d=3 -> 3 - 1 = 2
    assert make("SmoothL1Loss", beta=2.0)(out, t).item() == pytest.approx((0.25 + 2) / 2)


def test_weighted_smooth_l1_hand_values():
    out, t = vol([0.0, 3.0]), vol([1.0, 0.0])  # smooth L1: [.5, 2.5]
    # target 0 < .5 -> second element x10: (.5 + 25) / 2
    loss = make("WeightedSmoothL1Loss", threshold=0.5, initial_weight=10.0)
    assert loss(out, t).item() == pytest.approx(12.75)
    # apply_below_threshold false: target 1 >= .5 -> first element x10: (5 + 2.5) / 2
    loss = make(
        "WeightedSmoothL1Loss", threshold=0.5, initial_weight=10.0, apply_below_threshold=False
    )
    assert loss(out, t).item() == pytest.approx(3.75)


def test_focal_hand_values():
    x, t = vol([0.0, 0.0]), vol([1.0, 0.0])
    # p = p_t = .5, ce = ln 2, (1-p_t)² = 1/4, alpha_t = [.25, .75]:
    # (.25 * .25 ln2 + .75 * .25 ln2) / 2 = ln2 / 8
    assert make("FocalLoss")(x, t).item() == pytest.approx(LN2 / 8)
    # gamma 0 and no alpha: plain BCE
    x, t = rand_case(2)
    plain = make("FocalLoss", gamma=0.0, alpha=None)(x, t)
    assert plain.item() == pytest.approx(F.binary_cross_entropy_with_logits(x, t).item(), abs=1e-6)


def test_focal_random_vs_numpy():
    x, t = rand_case(3, c=2)
    xn, tn = x.double().numpy(), t.double().numpy()
    p = sigmoid_np(xn)
    p_t = np.where(tn == 1, p, 1 - p)
    a_t = np.where(tn == 1, 0.25, 0.75)
    expected = (-a_t * (1 - p_t) ** 2 * np.log(p_t)).mean()
    assert make("FocalLoss")(x, t).item() == pytest.approx(expected, rel=1e-5)


def test_tversky_hand_values():
    p, t = vol([1.0, 0.5, 0, 0]), vol([1.0, 1, 0, 0])
    # tp = 1.5, fp = Σp(1-t) = 0, fn = Σ(1-p)t = .5 -> TI = 1.5 / (1.5 + .7 * .5)
    loss = make("TverskyLoss", normalization="none")(p, t)
    assert loss.item() == pytest.approx(1 - 1.5 / 1.85, abs=1e-6)
    # gamma .75 (focal Tversky)
    loss = make("TverskyLoss", normalization="none", gamma=0.75)(p, t)
    assert loss.item() == pytest.approx((1 - 1.5 / 1.85) ** 0.75, abs=1e-6)


def test_tversky_half_half_is_linear_dice():
    x, t = rand_case(4, c=3)
    p, tn = sigmoid_np(x.double().numpy()), t.double().numpy()
    dice = 2 * channel_sums_np(p * tn) / (channel_sums_np(p) + channel_sums_np(tn))
    loss = make("TverskyLoss", alpha=0.5, beta=0.5)(x, t)
    assert loss.item() == pytest.approx(1 - dice.mean(), abs=1e-6)


# ------------------------------------------------------------------ masking
def masked_case(seed: int, c: int = 2):
    x, t = rand_case(seed, c)
    g = torch.Generator().manual_seed(seed + 100)
    drop = torch.rand(t.shape, generator=g) < 0.3
    return x, t.masked_fill(drop, -1.0), ~drop


@pytest.mark.parametrize(
    "name, subset_loss",
    [
        ("BCEWithLogitsLoss", F.binary_cross_entropy_with_logits),
        ("MSELoss", F.mse_loss),
        ("L1Loss", F.l1_loss),
        ("SmoothL1Loss", F.smooth_l1_loss),
    ],
)
def test_masking_equals_loss_over_unmasked_voxels(name, subset_loss):
    x, t, keep = masked_case(5)
    expected = subset_loss(x[keep], t[keep]).item()
    assert make(name, ignore_index=-1)(x, t).item() == pytest.approx(expected, abs=1e-6)


def test_masked_dice_sums_over_unmasked_voxels():
    x, t, keep = masked_case(6)
    p, tn, m = sigmoid_np(x.double().numpy()), t.double().numpy(), keep.double().numpy()
    tn = tn * m
    dice = 2 * channel_sums_np(p * tn, m) / (channel_sums_np(p * p, m) + channel_sums_np(tn, m))
    assert make("DiceLoss", ignore_index=-1)(x, t).item() == pytest.approx(1 - dice.mean(), 1e-6)
    # BCEDice = BCE over the kept voxels + Dice over the kept voxels
    bce = F.binary_cross_entropy_with_logits(x[keep], t[keep]).item()
    both = make("BCEDiceLoss", ignore_index=-1)(x, t).item()
    assert both == pytest.approx(bce + 1 - dice.mean(), abs=1e-6)


def test_masked_voxels_get_no_gradient():
    for name in (
        "BCEWithLogitsLoss",
        "DiceLoss",
        "GeneralizedDiceLoss",
        "FocalLoss",
        "TverskyLoss",
        "MSELoss",
        "WeightedSmoothL1Loss",
    ):
        params = {"threshold": 0.0, "initial_weight": 2.0} if name.startswith("Weighted") else {}
        x, t, keep = masked_case(7)
        x.requires_grad_()
        make(name, ignore_index=-1, **params)(x, t).backward()
        assert torch.all(x.grad[~keep] == 0), name
        assert torch.any(x.grad[keep] != 0), name


def test_masked_generalized_dice_equals_subset():
    # excluding voxels == computing on a volume that only has the kept voxels
    x, t = rand_case(8, c=1, shape=(1, 1, 1, 12))
    t[..., 8:] = -1.0
    full = make("GeneralizedDiceLoss", ignore_index=-1)(x, t)
    sub = make("GeneralizedDiceLoss")(x[..., :8], t[..., :8])
    assert full.item() == pytest.approx(sub.item(), abs=1e-6)


def test_cross_entropy_ignore_index_is_native():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 2, 3, 4, generator=g)
    t = torch.randint(0, 3, (2, 2, 3, 4), generator=g)
    t[0, 0] = 255
    keep = t != 255
    expected = F.cross_entropy(x.permute(0, 2, 3, 4, 1)[keep], t[keep]).item()
    assert make("CrossEntropyLoss", ignore_index=255)(x, t).item() == pytest.approx(expected, 1e-6)


# ------------------------------------------------------------------ skip_last_target
def test_skip_last_target_drops_the_appended_label_channel():
    x, t = rand_case(10, c=2)
    labels = torch.randint(0, 60, (t.shape[0], 1, *t.shape[2:])).float()
    with_labels = torch.cat([t, labels], dim=1)
    for name in ("BCEWithLogitsLoss", "DiceLoss", "BCEDiceLoss", "MSELoss"):
        skip = make(name, skip_last_target=True)(x, with_labels)
        assert skip.item() == pytest.approx(make(name)(x, t).item(), abs=1e-7), name


def test_skip_last_target_and_squeeze_channel_for_cross_entropy():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 2, 2, 3, 4, generator=g)
    classes = torch.randint(0, 2, (2, 2, 3, 4), generator=g)
    target = torch.stack([classes, torch.randint(0, 60, classes.shape, generator=g)], dim=1)
    loss = make("CrossEntropyLoss", skip_last_target=True, squeeze_channel=True)(x, target)
    assert loss.item() == pytest.approx(F.cross_entropy(x, classes).item(), abs=1e-7)
    # squeeze_channel alone drops a singleton channel axis
    alone = make("CrossEntropyLoss", squeeze_channel=True)(x, classes.unsqueeze(1))
    assert alone.item() == pytest.approx(F.cross_entropy(x, classes).item(), abs=1e-7)


def test_skip_last_target_needs_a_second_channel():
    x, t = rand_case(12, c=1)
    with pytest.raises(DataError, match="skip_last_target: true.*at least 2 channels"):
        make("DiceLoss", skip_last_target=True)(x, t)


# ------------------------------------------------------------------ target checks
MASK_LOSSES = [
    "BCEWithLogitsLoss",
    "DiceLoss",
    "BCEDiceLoss",
    "GeneralizedDiceLoss",
    "FocalLoss",
    "TverskyLoss",
]
CE_LOSSES = ["CrossEntropyLoss", "WeightedCrossEntropyLoss", "PixelWiseCrossEntropyLoss"]
REGRESSION = {
    "MSELoss": {},
    "L1Loss": {},
    "SmoothL1Loss": {},
    "WeightedSmoothL1Loss": {"threshold": 0.5, "initial_weight": 2.0},
}


@pytest.mark.parametrize("name", MASK_LOSSES)
def test_class_indices_given_to_mask_loss(name):
    x = torch.randn(2, 1, 4, 5, 6)
    labels = torch.randint(0, 3, (2, 4, 5, 6))
    with pytest.raises(DataError) as err:
        make(name)(x, labels)
    msg = str(err.value)
    assert name in msg and "(2, 1, 4, 5, 6)" in msg and "(2, 4, 5, 6) int64" in msg
    assert "BlobsToMask" in msg and "expand_dims: true" in msg and "\n" not in msg


@pytest.mark.parametrize("name", MASK_LOSSES)
def test_instance_labels_with_channel_given_to_mask_loss(name):
    x = torch.randn(1, 1, 2, 3, 4)
    labels = torch.randint(0, 40, (1, 1, 2, 3, 4)).float()
    labels[0, 0, 0, 0, :2] = torch.tensor([0.0, 39.0])
    with pytest.raises(DataError, match=r"\[0, 1\].*values from 0 to 39.*BlobsToMask"):
        make(name)(x, labels)


@pytest.mark.parametrize("name", MASK_LOSSES + list(REGRESSION))
def test_channel_mismatch_names_out_channels(name):
    x = torch.randn(1, 2, 2, 3, 4)
    t = torch.rand(1, 3, 2, 3, 4).round()
    with pytest.raises(DataError) as err:
        make(name, **REGRESSION.get(name, {}))(x, t)
    msg = str(err.value)
    assert "3 channel(s)" in msg and "out_channels" in msg and "skip_last_target: true" in msg


@pytest.mark.parametrize("name", CE_LOSSES)
def test_float_channel_target_given_to_cross_entropy(name):
    x = torch.randn(2, 3, 4, 5, 6)
    t = torch.randint(0, 3, (2, 1, 4, 5, 6)).float()
    w = torch.ones(2, 4, 5, 6)
    with pytest.raises(DataError) as err:
        make(name)(x, t, w)
    msg = str(err.value)
    assert name in msg and "(2, 1, 4, 5, 6) float32" in msg
    assert "expand_dims: false" in msg and "dtype: int64" in msg


@pytest.mark.parametrize("name", CE_LOSSES)
def test_float_indices_given_to_cross_entropy(name):
    x = torch.randn(1, 2, 2, 3, 4)
    t = torch.randint(0, 2, (1, 2, 3, 4)).float()
    with pytest.raises(DataError, match="must be integers.*dtype: int64"):
        make(name)(x, t, torch.ones(1, 2, 3, 4))


@pytest.mark.parametrize("name", CE_LOSSES)
def test_class_index_out_of_range(name):
    x = torch.randn(1, 2, 2, 3, 4)
    t = torch.zeros(1, 2, 3, 4, dtype=torch.int64)
    t[0, 0, 0, 0] = 5
    with pytest.raises(DataError, match=r"\[0, 1\] for 2 output channels.*0 to 5.*out_channels"):
        make(name)(x, t, torch.ones(1, 2, 3, 4))


@pytest.mark.parametrize("name", list(REGRESSION))
def test_regression_target_without_channel_axis(name):
    x = torch.randn(2, 1, 4, 5, 6)
    with pytest.raises(DataError, match=r"no channel axis.*expand_dims: true"):
        make(name, **REGRESSION[name])(x, torch.randn(2, 4, 5, 6))


def test_single_out_of_range_value_suggests_ignore_index():
    x, t = rand_case(16)
    t[0, 0, 0, 0, 0] = -1
    with pytest.raises(DataError, match="if -1 marks unlabelled voxels, set loss.ignore_index: -1"):
        make("DiceLoss")(x, t)
    make("DiceLoss", ignore_index=-1)(x, t)  # accepted once it is ignored
    x = torch.randn(1, 3, 1, 2, 2)
    t = torch.tensor([[[[0, 1], [2, 255]]]])
    with pytest.raises(DataError, match="set loss.ignore_index: 255"):
        make("CrossEntropyLoss")(x, t)


def test_pixel_wise_without_weight_mentions_weight_internal_path():
    x, t = torch.randn(1, 2, 2, 3, 4), torch.zeros(1, 2, 3, 4, dtype=torch.int64)
    with pytest.raises(DataError, match="weight_internal_path"):
        make("PixelWiseCrossEntropyLoss")(x, t)
    with pytest.raises(DataError, match="weight map must have the target's shape"):
        make("PixelWiseCrossEntropyLoss")(x, t, torch.ones(1, 2, 3, 5))


@pytest.mark.parametrize(
    "name",
    ["DiceLoss", "BCEDiceLoss", "CrossEntropyLoss", "WeightedCrossEntropyLoss"],
)
def test_class_weight_count_must_match_out_channels(name):
    loss = make(name, weight=[1.0, 2.0, 3.0])
    x = torch.randn(1, 2, 2, 3, 4)
    t = torch.zeros(1, 2, 3, 4, dtype=torch.int64)
    if loss.target_layout == "masks":
        t = torch.rand(1, 2, 2, 3, 4).round()
    with pytest.raises(ConfigError, match=r"loss.weight has 3 values.*2 channels.*out_channels"):
        loss(x, t)


def test_weight_buffers_follow_the_module_and_the_state_dict():
    loss = make("BCEDiceLoss", weight=[2.0], pos_weight=[3.0])
    assert set(dict(loss.named_buffers())) == {"weight", "pos_weight"}
    assert loss.double().weight.dtype == torch.float64
    assert set(make("DiceLoss").state_dict()) == set()  # unset factors are no buffers


def test_spatial_mismatch_is_a_data_error():
    with pytest.raises(DataError, match="conv_padding"):
        make("DiceLoss")(torch.randn(1, 1, 2, 3, 4), torch.ones(1, 1, 2, 3, 5))


def test_integer_and_bool_masks_are_accepted():
    x, t = rand_case(13)
    expected = make("DiceLoss")(x, t).item()
    assert make("DiceLoss")(x, t.long()).item() == pytest.approx(expected)
    assert make("DiceLoss")(x, t.bool()).item() == pytest.approx(expected)


def test_half_precision_logits_are_reduced_in_float32():
    x, t = rand_case(14)
    loss = make("BCEDiceLoss")(x.bfloat16(), t)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(make("BCEDiceLoss")(x, t).item(), abs=1e-2)


# ------------------------------------------------------------------ registry and config
def test_reference_style_dicts_build_every_loss():
    common = {"ignore_index": None, "skip_last_target": False, "weight": None, "pos_weight": None}
    assert set(MASK_LOSSES + CE_LOSSES + list(REGRESSION)) <= set(registry.list("losses"))
    for name in MASK_LOSSES + CE_LOSSES + list(REGRESSION):
        extra = REGRESSION.get(name, {})
        loss = make(name, **common, **extra)
        assert isinstance(loss, torch.nn.Module)
        assert loss.target_layout in ("masks", "indices", "dense")
        assert loss.needs_weight is (name == "PixelWiseCrossEntropyLoss")


def test_config_errors():
    with pytest.raises(ConfigError, match="weight.*no effect"):
        make("MSELoss", weight=[1.0, 2.0])
    with pytest.raises(ConfigError, match="pos_weight.*no effect"):
        make("DiceLoss", pos_weight=2.0)
    with pytest.raises(ConfigError, match="normalisation"):
        make("DiceLoss", normalisation="softmax")
    with pytest.raises(ConfigError, match="normalization"):
        make("DiceLoss", normalization="relu")
    with pytest.raises(ConfigError, match="threshold"):
        make("WeightedSmoothL1Loss", initial_weight=1.0)


def test_legacy_sigmoid_normalization_key():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loss = make("DiceLoss", sigmoid_normalization=False)
    assert loss.config.normalization == "softmax"
    assert any(issubclass(w.category, FutureWarning) for w in caught)


def test_direct_construction_validates():
    from unet_plugins.losses.dice import DiceLoss

    assert DiceLoss(normalization="softmax").config.normalization == "softmax"
    with pytest.raises(ConfigError):
        DiceLoss(alpha=1.0)


def test_weight_length_mismatch_at_run_time():
    with pytest.raises(ConfigError, match="3 values.*2 channels"):
        make("DiceLoss", weight=[1.0, 1.0, 1.0])(*rand_case(15))


def check(name, model, **params):
    return registry.get("losses", name).check_config({"name": name, **params}, model)


def test_check_config_clear_cases():
    seg3 = {"name": "UNet3D", "out_channels": 3, "final_sigmoid": False}
    assert check("CrossEntropyLoss", seg3) == []
    assert check("CrossEntropyLoss", {"out_channels": 1, "final_sigmoid": False})[0].startswith(
        "loss CrossEntropyLoss needs one output channel per class"
    )
    # CE with the reference's default final_sigmoid (true)
    (problem,) = check("CrossEntropyLoss", {"out_channels": 3})
    assert "final_sigmoid: false" in problem
    (problem,) = check(
        "DiceLoss", {"out_channels": 2, "final_sigmoid": True}, normalization="softmax"
    )
    assert "softmax" in problem and "final_sigmoid: false" in problem
    assert check("DiceLoss", {"out_channels": 2}) == []
    assert check("BCEDiceLoss", {"out_channels": 1}, skip_last_target=True) == []
    (problem,) = check("DiceLoss", {"out_channels": 2}, weight=[1.0, 2.0, 3.0])
    assert "loss.weight has 3 values but model.out_channels is 2" in problem
    denoise = {"out_channels": 1, "is_segmentation": False}
    assert check("SmoothL1Loss", denoise) == []
    (problem,) = check("MSELoss", {"out_channels": 1})
    assert "is_segmentation: false" in problem


# ------------------------------------------------------------------ parity with the reference
def reference_inputs(kind: str, c: int, seed: int, extra_channel: bool = False):
    """The inputs the values below were computed on (shape (2, C, 4, 6, 5))."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((2, c, 4, 6, 5), generator=g) * 2
    tc = c + 1 if extra_channel else c
    if kind == "masks":
        t = (torch.rand((2, tc, 4, 6, 5), generator=g) > 0.6).float()
    elif kind == "indices":
        t = torch.randint(0, c, (2, 4, 6, 5), generator=g)
        if extra_channel:
            t = torch.stack([t, torch.randint(0, 50, t.shape, generator=g)], 1)
    else:
        t = torch.randn((2, tc, 4, 6, 5), generator=g)
    return x, t


#: (config, target kind, channels, value). Values from pytorch3dunet 1.9.6
#: (``get_loss_criterion({"loss": config, "device": "cpu"})(x, t)``, torch 2.13 CPU) on
#: ``reference_inputs(kind, channels, seed=0)``.
REFERENCE_VALUES = [
    ({"name": "BCEWithLogitsLoss"}, "masks", 3, 1.10286474),
    ({"name": "BCEWithLogitsLoss", "pos_weight": 3.0}, "masks", 2, 1.90064692),
    ({"name": "DiceLoss"}, "masks", 3, 0.47036523),
    ({"name": "DiceLoss", "normalization": "softmax"}, "masks", 3, 0.56859076),
    ({"name": "DiceLoss", "weight": [0.2, 1.0, 3.0]}, "masks", 3, 0.23491335),
    ({"name": "BCEDiceLoss", "alpha": 0.3}, "masks", 3, 1.24397433),
    ({"name": "BCEDiceLoss", "skip_last_target": True}, "masks", 1, 1.47387409),
    ({"name": "GeneralizedDiceLoss"}, "masks", 1, 0.52417338),
    ({"name": "GeneralizedDiceLoss"}, "masks", 3, 0.56671399),
    (
        {"name": "CrossEntropyLoss", "weight": [0.5, 2.0, 1.0], "ignore_index": 0},
        "indices",
        3,
        1.93319929,
    ),
    (
        {"name": "CrossEntropyLoss", "skip_last_target": True, "squeeze_channel": True},
        "indices",
        2,
        1.31617427,
    ),
    ({"name": "WeightedCrossEntropyLoss"}, "indices", 3, 1.90012550),
    ({"name": "WeightedCrossEntropyLoss", "ignore_index": 2}, "indices", 3, 2.07615376),
    ({"name": "MSELoss"}, "dense", 2, 5.50873899),
    ({"name": "SmoothL1Loss"}, "dense", 2, 1.39279866),
    (
        {"name": "WeightedSmoothL1Loss", "threshold": 0.2, "initial_weight": 0.1},
        "dense",
        2,
        0.62206435,
    ),
]


@pytest.mark.parametrize("config, kind, channels, value", REFERENCE_VALUES)
def test_values_match_the_reference(config, kind, channels, value):
    x, t = reference_inputs(kind, channels, 0, config.get("skip_last_target", False))
    assert make(**config)(x, t).item() == pytest.approx(value, abs=1e-5)
