"""Evaluation metrics: hand-computed values, scikit-image and brute-force references, real data.

Reference values hard-coded in ``test_reference_values`` were computed by pytorch-3dunet 1.9.6
itself (installed in a separate venv, metrics built with its ``get_evaluation_metric`` from the
same config dicts) on the batch made by ``_parity_batch``.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage import measure
from skimage.metrics import adapted_rand_error, peak_signal_noise_ratio
from skimage.segmentation import find_boundaries

from unet_core import registry
from unet_core.errors import ConfigError, DataError
from unet_plugins.metrics.matching import (
    iou_matrix,
    matched_counts,
    relabel_consecutive,
    remove_small_instances,
)


def create(name: str, **params):
    return registry.create("metrics", {"name": name, **params})


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


# --------------------------------------------------------------------------------------------
# independent references written for these tests
# --------------------------------------------------------------------------------------------
def brute_iou(gt: np.ndarray, seg: np.ndarray) -> list[list[float]]:
    """IoU by explicit loops over instance pairs (0 = background)."""
    g_ids = [v for v in np.unique(gt) if v != 0]
    s_ids = [v for v in np.unique(seg) if v != 0]
    out = []
    for a in g_ids:
        row = []
        for b in s_ids:
            inter = np.count_nonzero((gt == a) & (seg == b))
            union = np.count_nonzero((gt == a) | (seg == b))
            row.append(inter / union)
        out.append(row)
    return out


def brute_max_pairs(ok: list[list[bool]]) -> int:
    """Largest one-to-one matching among allowed pairs (augmenting paths, Kuhn's algorithm)."""
    owner: dict[int, int] = {}  # predicted instance -> gt instance

    def augment(i: int, seen: set[int]) -> bool:
        for j, allowed in enumerate(ok[i]):
            if allowed and j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return sum(augment(i, set()) for i in range(len(ok)))


def brute_counts(gt, seg, tau, strict):
    iou = brute_iou(gt, seg)
    n_gt, n_seg = len(iou), len(np.unique(seg[seg != 0]))
    ok = [[(v > tau) if strict else (v >= tau) for v in row] for row in iou]
    tp = brute_max_pairs(ok)
    return tp, n_seg - tp, n_gt - tp


def brute_ap(gt, seg) -> float:
    accs = []
    for tau in np.linspace(0.5, 0.95, 10):
        tp, fp, fn = brute_counts(gt, seg, tau, strict=True)
        accs.append(tp / (tp + fp + fn) if tp else 0.0)
    return float(np.mean(accs))


def random_labels(rng: np.random.Generator, shape, n_values=4) -> np.ndarray:
    """Small random instance images: connected components of random classes, 0 kept."""
    classes = rng.integers(0, n_values, shape)
    out = np.zeros(shape, np.int64)
    for c in range(1, n_values):
        comp = measure.label(classes == c, connectivity=1)
        out[comp > 0] = comp[comp > 0] + 100 * c
    return out


# --------------------------------------------------------------------------------------------
# registry, schemas, directions
# --------------------------------------------------------------------------------------------
REFERENCE_STYLE = [
    {"name": "DiceCoefficient"},
    {"name": "MeanIoU", "ignore_index": None},
    {"name": "MeanIoU", "skip_background": False, "skip_channels": [1], "ignore_index": -1},
    {
        "name": "BoundaryAdaptedRandError",
        "threshold": 0.4,
        "use_last_target": True,
        "use_first_input": True,
    },
    {"name": "BoundaryAdaptedRandError", "save_plots": False, "plots_dir": "."},
    {"name": "AdaptedRandError", "use_last_target": False, "ignore_index": None},
    {"name": "GenericAdaptedRandError", "input_channels": [0, 1], "invert_channels": [1]},
    {"name": "BlobsAveragePrecision", "use_last_target": True, "metric": "ap"},
    {"name": "BlobsAveragePrecision", "thresholds": [0.4, 0.5, 0.6, 0.7, 0.8], "metric": "ap"},
    {"name": "BlobsBoundaryAveragePrecision", "metric": "acc", "min_instance_size": 10},
    {"name": "BoundaryAveragePrecision", "metric": "ap", "min_instance_size": 100},
    {"name": "GenericAveragePrecision", "metric": "acc"},
    {"name": "PSNR", "ignore_index": None},
    {"name": "MSE"},
    {"name": "InstanceF1", "iou_threshold": [0.5, 0.75], "report": "precision"},
]

DIRECTIONS = {
    "DiceCoefficient": True,
    "MeanIoU": True,
    "AdaptedRandError": False,
    "BoundaryAdaptedRandError": False,
    "GenericAdaptedRandError": False,
    "BlobsAveragePrecision": True,
    "BlobsBoundaryAveragePrecision": True,
    "BoundaryAveragePrecision": True,
    "GenericAveragePrecision": True,
    "PSNR": True,
    "MSE": False,
    "InstanceF1": True,
}


@pytest.mark.parametrize("spec", REFERENCE_STYLE, ids=lambda s: s["name"])
def test_reference_style_configs_build(spec):
    metric = registry.create("metrics", dict(spec))
    assert metric.higher_is_better is DIRECTIONS[spec["name"]]


def test_every_metric_is_registered_with_a_direction():
    assert set(DIRECTIONS) <= set(registry.list("metrics"))
    for name, higher in DIRECTIONS.items():
        assert registry.get("metrics", name).higher_is_better is higher


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "DiceCoefficient", "epsilonn": 1e-6},
        {"name": "GenericAdaptedRandError"},  # input_channels is required
        {"name": "GenericAdaptedRandError", "input_channels": [0], "invert_channels": [2]},
        {"name": "BlobsAveragePrecision", "metric": "f1"},
        {"name": "BoundaryAdaptedRandError", "thresholds": []},
        {"name": "InstanceF1", "iou_threshold": 1.5},
        {"name": "InstanceF1", "report": "dice"},
        {"name": "PSNR", "data_range": 0},
    ],
)
def test_bad_configs_are_config_errors(spec):
    with pytest.raises(ConfigError) as err:
        registry.create("metrics", spec)
    assert spec["name"] in str(err.value)


# --------------------------------------------------------------------------------------------
# DiceCoefficient
# --------------------------------------------------------------------------------------------
def test_dice_hand_computed():
    p = t([0.5, 1.0, 0.0, 0.25]).reshape(1, 1, 1, 2, 2)
    g = t([1.0, 1.0, 0.0, 0.0]).reshape(1, 1, 1, 2, 2)
    # 2 * (0.5 + 1) / ((0.25 + 1 + 0 + 0.0625) + 2)
    assert create("DiceCoefficient")(p, g).item() == pytest.approx(3 / 3.3125, rel=1e-6)


def test_dice_pools_the_batch_per_channel_then_averages_channels():
    p = t([[[1.0, 0.0]], [[1.0, 1.0]]]).reshape(2, 1, 2)  # (N=2, C=1, 2 voxels)
    g = t([[[1.0, 0.0]], [[0.0, 1.0]]]).reshape(2, 1, 2)
    # pooled: sum(p t) = 1 + 1, sum p^2 = 3, sum t^2 = 2 -> 4 / 5
    assert create("DiceCoefficient")(p, g).item() == pytest.approx(0.8)
    two = torch.cat([p, 1 - p], dim=1)
    two_t = torch.cat([g, 1 - g], dim=1)
    # channel 1: p = [0,1,0,0], t = [0,1,1,0] -> 2 * 1 / (1 + 2)
    assert create("DiceCoefficient")(two, two_t).item() == pytest.approx((0.8 + 2 / 3) / 2)
    assert create("DiceCoefficient", skip_channels=[0])(two, two_t).item() == pytest.approx(2 / 3)


def test_dice_ignore_index_excludes_voxels():
    p = t([0.9, 0.8, 0.3, 0.7]).reshape(1, 1, 4)
    g = t([1.0, -1.0, 0.0, -1.0]).reshape(1, 1, 4)
    kept = create("DiceCoefficient", ignore_index=-1)(p, g).item()
    # only voxels 0 and 2: 2 * 0.9 / (0.81 + 0.09 + 1)
    assert kept == pytest.approx(1.8 / 1.9, rel=1e-6)


def test_dice_empty_masks_and_wrong_layout():
    zeros = torch.zeros(1, 2, 3, 3)
    assert create("DiceCoefficient", empty_score="reference")(zeros, zeros).item() == 0.0
    with pytest.raises(DataError, match="same shape|prediction's shape"):
        create("DiceCoefficient")(torch.rand(2, 3, 4, 4, 4), torch.randint(0, 3, (2, 4, 4, 4)))
    with pytest.raises(ConfigError, match="skip_channels"):
        create("DiceCoefficient", skip_channels=[0, 1])(zeros, zeros)


# --------------------------------------------------------------------------------------------
# MeanIoU
# --------------------------------------------------------------------------------------------
def _three_class_case():
    # argmax prediction [0, 1, 1, 2, 2, 0], target [0, 1, 2, 2, 2, 1]
    pred_classes = torch.tensor([0, 1, 1, 2, 2, 0])
    p = torch.nn.functional.one_hot(pred_classes, 3).T.float().reshape(1, 3, 1, 2, 3) * 0.8
    g = torch.tensor([0, 1, 2, 2, 2, 1]).reshape(1, 1, 2, 3)
    return p, g


def test_mean_iou_class_indices_hand_computed():
    p, g = _three_class_case()
    iou0, iou1, iou2 = 1 / 2, 1 / 3, 2 / 3
    assert create("MeanIoU")(p, g).item() == pytest.approx((iou1 + iou2) / 2, rel=1e-6)
    all_classes = create("MeanIoU", skip_background=False)(p, g).item()
    assert all_classes == pytest.approx((iou0 + iou1 + iou2) / 3, rel=1e-6)
    assert create("MeanIoU", skip_channels=[2])(p, g).item() == pytest.approx(iou1, rel=1e-6)


def test_mean_iou_ignore_index_and_out_of_range_labels():
    p, g = _three_class_case()
    ignored = g.clone()
    ignored[0, 0, 1, 2] = 255  # the voxel (pred 0, target 1) drops out
    iou1 = 1 / 2
    iou2 = 2 / 3
    value = create("MeanIoU", ignore_index=255)(p, ignored).item()
    assert value == pytest.approx((iou1 + iou2) / 2, rel=1e-6)
    # without ignore_index a label outside [0, C) belongs to no class (pred still counts)
    plain = create("MeanIoU", skip_background=False)(p, ignored).item()
    assert plain == pytest.approx((1 / 2 + 1 / 2 + 2 / 3) / 3, rel=1e-6)


def test_mean_iou_channel_masks_and_empty():
    p = t([[0.9, 0.2, 0.7, 0.1], [0.1, 0.1, 0.1, 0.1]]).reshape(1, 2, 1, 2, 2)
    g = t([[1, 1, 0, 0], [0, 0, 0, 0]]).reshape(1, 2, 1, 2, 2)
    # channel 0: pred {0, 2}, target {0, 1} -> 1/3; channel 1: empty vs empty -> 1
    assert create("MeanIoU")(p, g).item() == pytest.approx((1 / 3 + 1) / 2, rel=1e-6)
    assert create("MeanIoU", skip_channels=[1])(p, g).item() == pytest.approx(1 / 3, rel=1e-6)
    ignored = g.clone()
    ignored[0, 0, 0, 0, 1] = -1  # channel 0 voxel 1 (target fg, pred bg) leaves
    value = create("MeanIoU", ignore_index=-1, skip_channels=[1])(p, ignored).item()
    assert value == pytest.approx(1 / 2, rel=1e-6)
    # the reference's own checks: target = (pred > 0.5) gives exactly 1
    rand = torch.rand(3, 3, 4, 5, 5)
    assert create("MeanIoU")(rand, (rand > 0.5).long()).item() == 1.0


def test_mean_iou_batch_mean_and_bad_shapes():
    p, g = _three_class_case()
    perfect = torch.nn.functional.one_hot(g[0], 3).permute(3, 0, 1, 2).float().unsqueeze(0)
    batch_p, batch_g = torch.cat([p, perfect]), torch.cat([g, g])
    expected = ((1 / 3 + 2 / 3) / 2 + 1.0) / 2
    assert create("MeanIoU")(batch_p, batch_g).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(DataError, match="class indices"):
        create("MeanIoU")(p, torch.zeros(1, 2, 1, 2, 3))
    with pytest.raises(ConfigError, match="excluded"):
        create("MeanIoU", skip_channels=[1, 2])(p, g)


def test_overlap_metrics_stay_on_the_input_device():
    p = torch.rand(1, 2, 2, 4, 4)
    g = (torch.rand(1, 2, 2, 4, 4) > 0.5).float()
    for metric in (create("DiceCoefficient"), create("MeanIoU"), create("PSNR"), create("MSE")):
        out = metric(p, g)
        assert isinstance(out, torch.Tensor) and out.dim() == 0 and out.device == p.device


# --------------------------------------------------------------------------------------------
# adapted Rand error
# --------------------------------------------------------------------------------------------
def test_adapted_rand_matches_skimage():
    rng = np.random.default_rng(3)
    gt = np.stack([random_labels(rng, (6, 10, 10)) for _ in range(2)])
    seg = np.stack([random_labels(rng, (6, 10, 10)) for _ in range(2)])
    expected = np.mean([adapted_rand_error(g, s)[0] for g, s in zip(gt, seg, strict=True)])
    value = create("AdaptedRandError")(
        torch.from_numpy(seg[:, None]), torch.from_numpy(gt[:, None])
    )
    assert value == pytest.approx(expected, abs=1e-12)
    # use_last_target picks the last target channel; min over prediction channels
    two_gt = torch.from_numpy(np.stack([np.zeros_like(gt), gt], axis=1))
    both = torch.from_numpy(np.stack([seg, gt], axis=1))
    assert create("AdaptedRandError", use_last_target=True)(both, two_gt) == 0.0


@pytest.mark.parametrize(
    ("name", "instead"),
    [("AdaptedRandError", "BoundaryAdaptedRandError"), ("GenericAveragePrecision", "Blobs")],
)
def test_label_metrics_refuse_probabilities(name, instead):
    gt = torch.from_numpy(random_labels(np.random.default_rng(4), (1, 6, 10, 10))[:, None])
    probabilities = torch.rand(1, 1, 6, 10, 10)
    with pytest.raises(DataError, match=rf"{name} .*probabilities\?.*{instead}"):
        create(name)(probabilities, gt)
    assert create(name)(gt.float(), gt) in (0.0, 1.0)  # whole-number floats are labels


def test_adapted_rand_ignore_index_single_label_and_empty():
    rng = np.random.default_rng(4)
    gt = random_labels(rng, (5, 8, 8))
    seg = random_labels(rng, (5, 8, 8))
    with_ignore = np.where(gt % 7 == 0, -1, gt)
    expected = adapted_rand_error(np.where(with_ignore == -1, 0, with_ignore), seg)[0]
    metric = create("AdaptedRandError", ignore_index=-1)
    assert metric(seg[None, None], with_ignore[None, None]) == pytest.approx(expected, abs=1e-12)
    # the reference scores a single-label ground truth 0.0; a batch mean includes it
    single = np.full_like(gt, 5)
    pair = np.stack([single, gt])[:, None]
    reference = create("AdaptedRandError", empty_target="reference")
    value = reference(np.stack([seg, seg])[:, None], pair)
    assert value == pytest.approx(adapted_rand_error(gt, seg)[0] / 2, abs=1e-12)
    # the reference's failing tests: a [64:128] z crop of a 32-slice volume is empty
    empty = np.zeros((1, 1, 0, 8, 8), np.int64)
    assert reference(empty, empty) == 0.0
    boundary = create("BoundaryAdaptedRandError", empty_target="reference")
    assert boundary(empty.astype(np.float32), empty) == 0.0


def test_adapted_rand_negative_and_huge_labels_are_relabelled():
    rng = np.random.default_rng(5)
    gt = random_labels(rng, (4, 8, 8))
    seg = random_labels(rng, (4, 8, 8))
    expected = adapted_rand_error(gt, seg)[0]
    weird_seg = np.where(seg > 0, seg * 10**12, -3)  # same partition, awkward ids
    value = create("AdaptedRandError")(weird_seg[None, None], gt[None, None])
    assert value == pytest.approx(expected, abs=1e-12)
    with pytest.raises(DataError, match="BoundaryAdaptedRandError"):
        create("AdaptedRandError")(np.full((1, 1, 4, 8, 8), 0.3), gt[None, None])


def test_boundary_adapted_rand_matches_skimage_per_threshold():
    rng = np.random.default_rng(6)
    gt = random_labels(rng, (4, 12, 12), n_values=3)
    pmaps = rng.random((2, 4, 12, 12)).astype(np.float32)
    thresholds = [0.35, 0.6]

    def expected(channels, invert):
        errors = []
        for ch in channels:
            for th in thresholds:
                mask = pmaps[ch] > th
                seg = measure.label(~mask if invert else mask, connectivity=1)
                errors.append(adapted_rand_error(gt, seg)[0])
        return min(errors)

    target = np.stack([np.zeros_like(gt), gt])[None]
    metric = create("BoundaryAdaptedRandError", thresholds=thresholds)
    assert metric(pmaps[None], target) == pytest.approx(expected([0, 1], True), abs=1e-12)
    metric = create("BoundaryAdaptedRandError", thresholds=thresholds, input_channel=1)
    assert metric(pmaps[None], target) == pytest.approx(expected([1], True), abs=1e-12)
    metric = create("BoundaryAdaptedRandError", thresholds=thresholds, invert_pmaps=False)
    assert metric(pmaps[None], target) == pytest.approx(expected([0, 1], False), abs=1e-12)


def test_generic_adapted_rand_inverts_chosen_channels():
    rng = np.random.default_rng(7)
    gt = random_labels(rng, (4, 12, 12), n_values=3)
    pmaps = rng.random((3, 4, 12, 12)).astype(np.float32)
    metric = create(
        "GenericAdaptedRandError", input_channels=[0, 2], invert_channels=[2], thresholds=[0.5]
    )
    errors = [
        adapted_rand_error(gt, measure.label(pmaps[0] > 0.5, connectivity=1))[0],
        adapted_rand_error(gt, measure.label((1 - pmaps[2]) > 0.5, connectivity=1))[0],
    ]
    assert metric(pmaps[None], gt[None, None]) == pytest.approx(min(errors), abs=1e-12)
    with pytest.raises(DataError, match="input_channels"):
        create("GenericAdaptedRandError", input_channels=[5])(pmaps[None], gt[None, None])


# --------------------------------------------------------------------------------------------
# instance matching machinery
# --------------------------------------------------------------------------------------------
def test_relabel_keeps_background_and_handles_no_zero():
    ids, n = relabel_consecutive(np.array([[7, 0], [3, 7]]))
    assert n == 2 and ids.tolist() == [[2, 0], [1, 2]]
    ids, n = relabel_consecutive(np.array([[7, 9], [3, 7]]))  # dense labels, no background
    assert n == 3 and ids.tolist() == [[2, 3], [1, 2]]
    ids, n = relabel_consecutive(np.array([-2, 0, 4]))
    assert n == 2 and ids.tolist() == [1, 0, 2]


def test_remove_small_instances_does_not_mutate():
    labels = np.array([1, 1, 1, 2, 0, 3, 3], dtype=np.uint16)
    before = labels.copy()
    out = remove_small_instances(labels, 2)
    assert out.tolist() == [1, 1, 1, 0, 0, 3, 3] and out.dtype == labels.dtype
    assert np.array_equal(labels, before)
    assert remove_small_instances(labels, None) is labels


def test_iou_matrix_matches_brute_force():
    rng = np.random.default_rng(8)
    for _ in range(5):
        gt = random_labels(rng, (7, 7))
        seg = random_labels(rng, (7, 7))
        assert np.allclose(
            iou_matrix(gt, seg),
            np.array(brute_iou(gt, seg)).reshape(-1, len(np.unique(seg[seg != 0]))),
        )


def test_hungarian_beats_greedy_below_half():
    # gt A overlaps X (IoU 0.6) and Y (0.375); gt B overlaps only X (0.4). At IoU >= 0.3 the
    # greedy choice A-X leaves B alone; the optimal matching pairs A-Y and B-X.
    iou = np.array([[0.6, 0.375], [0.4, 0.0]])
    assert matched_counts(iou, 0.3) == (2, 0, 0)
    assert matched_counts(iou, 0.5) == (1, 1, 1)
    assert matched_counts(np.zeros((0, 3)), 0.5) == (0, 3, 0)


# --------------------------------------------------------------------------------------------
# average precision
# --------------------------------------------------------------------------------------------
def test_generic_average_precision_matches_brute_force():
    rng = np.random.default_rng(9)
    for _ in range(4):
        gt = random_labels(rng, (6, 6))
        seg = np.where(rng.random((6, 6)) < 0.8, gt, random_labels(rng, (6, 6)))
        value = create("GenericAveragePrecision")(seg[None, None, None], gt[None, None, None])
        assert value == pytest.approx(brute_ap(gt, seg), abs=1e-12)
        acc = create("GenericAveragePrecision", metric="acc")(seg[None, None], gt[None, None])
        tp, fp, fn = brute_counts(gt, seg, 0.5, strict=True)
        assert acc == pytest.approx(tp / (tp + fp + fn) if tp else 0.0, abs=1e-12)


def test_blobs_average_precision_is_best_threshold():
    rng = np.random.default_rng(10)
    gt = random_labels(rng, (8, 8), n_values=3)
    prob = np.clip((gt > 0) * 0.7 + 0.4 * rng.random((8, 8)) - 0.1, 0, 1).astype(np.float32)
    thresholds = [0.4, 0.5, 0.6, 0.7, 0.8]
    expected = max(brute_ap(gt, measure.label(prob > th, connectivity=1)) for th in thresholds)
    target = torch.from_numpy(np.stack([gt > 0, gt])[None]).float()
    assert create("BlobsAveragePrecision")(torch.from_numpy(prob[None, None]), target) == (
        pytest.approx(expected, abs=1e-12)
    )


def test_blobs_boundary_average_precision_uses_foreground_minus_boundary():
    gt = np.zeros((10, 10), np.int64)
    gt[1:4, 1:9] = 1
    gt[5:9, 1:9] = 2
    fg = (gt > 0).astype(np.float32)
    boundary = np.zeros_like(fg)
    boundary[4, :] = 1.0  # between the blobs: already background
    pred = np.stack([fg, boundary])[None, :, None]
    assert create("BlobsBoundaryAveragePrecision")(pred, gt[None, None, None]) == 1.0
    merged = fg.copy()
    merged[4, 1:9] = 1.0  # the blobs touch; the boundary channel separates them again
    pred = np.stack([merged, 1 - (gt > 0) * 1.0 - (merged == 0)])[None, :, None]
    assert create("BlobsBoundaryAveragePrecision")(pred, gt[None, None, None]) == 1.0
    with pytest.raises(DataError, match="out_channels"):
        create("BlobsBoundaryAveragePrecision")(fg[None, None, None], gt[None, None, None])


def test_boundary_average_precision_synthetic_grid_is_perfect():
    # the reference's synthetic test, smaller: boundary planes, target = their complement
    boundaries = np.zeros((20, 60, 60), np.int32)
    for i in range(15, 60, 15):
        boundaries[:, :, i : i + 2] = 1
        boundaries[:, i : i + 2, :] = 1
    boundaries[10:12] = 1
    target = measure.label(np.logical_not(boundaries).astype(np.int32), background=0)
    value = create("BoundaryAveragePrecision")(
        torch.from_numpy(boundaries[None, None]), torch.from_numpy(target[None, None])
    )
    assert value == 1.0


def test_average_precision_edge_cases():
    dense = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])  # no background label at all
    assert create("GenericAveragePrecision")(dense[None, None], dense[None, None]) == 1.0
    # the same partition with other ids: the reference took each image's smallest label as
    # background, compared the left half with the right one and scored 0.0
    swapped = np.array([[5, 5, 1, 1], [5, 5, 1, 1]])
    assert create("GenericAveragePrecision")(swapped[None, None], dense[None, None]) == 1.0
    one_wrong = np.array([[1, 1, 1, 2], [1, 1, 1, 2]])  # the reference: 0.0
    assert create("GenericAveragePrecision")(one_wrong[None, None], dense[None, None]) == (
        pytest.approx(brute_ap(dense, one_wrong))
    )
    # no instances anywhere, and no match at all: 0 (the reference crashed on 'acc' here)
    zeros = np.zeros((1, 1, 4, 4), np.int64)
    assert create("GenericAveragePrecision", metric="acc")(zeros, zeros) == 0.0
    far = np.zeros((1, 1, 4, 4), np.int64)
    far[0, 0, 0, 0] = 1
    assert create("BlobsAveragePrecision", metric="acc")(far.astype(np.float32), 1 - far) == 0.0


def test_tuple_of_heads_is_joined_along_channels():
    rng = np.random.default_rng(13)
    gt = random_labels(rng, (8, 8), n_values=3)
    head1 = torch.from_numpy(rng.random((1, 1, 8, 8)).astype(np.float32))
    head2 = torch.from_numpy(((gt > 0) * 0.9).astype(np.float32)[None, None])
    target = torch.from_numpy(gt[None, None])
    joined = create("BlobsAveragePrecision", input_channel=1)(torch.cat([head1, head2], 1), target)
    assert create("BlobsAveragePrecision", input_channel=1)((head1, head2), target) == joined
    assert joined == pytest.approx(brute_ap(gt, measure.label(gt > 0, connectivity=1)))


def test_min_instance_size_filters_both_without_mutation():
    gt = np.zeros((1, 1, 6, 6), np.int64)
    gt[0, 0, :3, :3] = 1  # 9 voxels
    gt[0, 0, 5, 5] = 2  # 1 voxel: removed from target and prediction
    pred = (gt > 0).astype(np.float32)
    pred[0, 0, 5, 0] = 1.0  # a 1-voxel false positive: removed from the prediction
    target = torch.from_numpy(gt.copy())
    plain = create("BlobsAveragePrecision")(pred, target)
    assert plain == pytest.approx(2 / 3)  # 2 tp, 1 fp at every IoU threshold
    filtered = create("BlobsAveragePrecision", min_instance_size=2)(pred, target)
    assert filtered == 1.0
    assert torch.equal(target, torch.from_numpy(gt))  # the reference filtered in place


# --------------------------------------------------------------------------------------------
# InstanceF1
# --------------------------------------------------------------------------------------------
def test_instance_f1_matches_brute_force_matching():
    rng = np.random.default_rng(11)
    for tau in (0.3, 0.5, 0.7):
        gt = random_labels(rng, (7, 7))
        seg = np.where(rng.random((7, 7)) < 0.75, gt, random_labels(rng, (7, 7)))
        tp, fp, fn = brute_counts(gt, seg, tau, strict=False)
        for report, expected in [
            ("f1", 2 * tp / (2 * tp + fp + fn)),
            ("precision", tp / (tp + fp)),
            ("recall", tp / (tp + fn)),
            ("accuracy", tp / (tp + fp + fn)),
        ]:
            metric = create("InstanceF1", iou_threshold=tau, report=report)
            assert metric(seg[None, None], gt[None, None]) == pytest.approx(expected if tp else 0)


def test_instance_f1_from_probabilities_with_thresholds_list():
    gt = np.zeros((8, 8), np.int64)
    gt[0:3, 0:3] = 1
    gt[5:8, 5:8] = 2
    gt[0:2, 6:8] = 3
    prob = np.zeros((8, 8), np.float32)
    prob[0:3, 0:3] = 0.9  # exact: IoU 1
    prob[5:8, 5:7] = 0.8  # 6 of 9 voxels: IoU 2/3
    prob[4, 0] = 0.7  # false positive; gt 3 is missed
    target = np.stack([gt > 0, gt])[None].astype(np.float32)
    metric = create("InstanceF1", iou_threshold=[0.5, 0.75])
    # IoU 0.5: tp 2, fp 1, fn 1 -> f1 4/6; IoU 0.75: tp 1, fp 2, fn 2 -> 2/6
    assert metric(prob[None, None], target) == pytest.approx((4 / 6 + 2 / 6) / 2)
    assert create("InstanceF1", threshold=0.75)(prob[None, None], target) == pytest.approx(
        2 * 2 / (2 * 2 + 0 + 1)
    )
    sized = create("InstanceF1", min_instance_size=2)(prob[None, None], target)
    assert sized == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))  # 1-voxel prediction dropped


def test_instance_f1_empty_cases():
    empty = np.zeros((1, 1, 4, 4), np.float32)
    assert create("InstanceF1")(empty, empty) == 1.0
    assert create("InstanceF1", empty_score=0.0)(empty, empty) == 0.0
    one = empty.copy()
    one[0, 0, 1:3, 1:3] = 1
    assert create("InstanceF1")(one, empty) == 0.0  # all false positives
    assert create("InstanceF1", report="recall")(empty, one) == 0.0  # all missed


# --------------------------------------------------------------------------------------------
# PSNR / MSE
# --------------------------------------------------------------------------------------------
def test_psnr_and_mse_hand_computed():
    g = t([0.0, 0.5, 1.0, 0.5]).reshape(1, 1, 1, 2, 2)
    p = t([0.1, 0.5, 0.9, 0.5]).reshape(1, 1, 1, 2, 2)
    assert create("MSE")(p, g).item() == pytest.approx(0.005, rel=1e-6)
    assert create("PSNR")(p, g).item() == pytest.approx(10 * math.log10(1 / 0.005), rel=1e-6)
    assert create("PSNR", data_range=4.0)(p, g).item() == pytest.approx(
        10 * math.log10(16 / 0.005), rel=1e-6
    )
    assert create("PSNR")(g, g).item() == math.inf
    masked = g.clone()
    masked[0, 0, 0, 0, 0] = -5.0
    assert create("MSE", ignore_index=-5.0)(p, masked).item() == pytest.approx(0.01 / 3, rel=1e-6)
    assert create("PSNR", ignore_index=-5.0)(p, masked).item() == pytest.approx(
        10 * math.log10(1 / (0.01 / 3)), rel=1e-6
    )


def test_psnr_infers_data_range_like_skimage():
    rng = np.random.default_rng(12)
    for target in (
        rng.random((2, 1, 4, 6, 6), dtype=np.float32),  # >= 0: range 1
        (2 * rng.random((2, 1, 4, 6, 6)) - 1).astype(np.float32),  # negatives: range 2
    ):
        pred = (target + 0.05 * rng.standard_normal(target.shape)).astype(np.float32)
        expected = peak_signal_noise_ratio(target, pred)
        value = create("PSNR")(torch.from_numpy(pred), torch.from_numpy(target)).item()
        assert value == pytest.approx(expected, abs=1e-5)
    u8 = rng.integers(0, 256, (1, 1, 4, 6, 6)).astype(np.uint8)
    noisy = u8.astype(np.float32) + rng.normal(0, 3, u8.shape).astype(np.float32)
    value = create("PSNR")(torch.from_numpy(noisy), torch.from_numpy(u8)).item()
    mse = np.mean((noisy.astype(np.float64) - u8) ** 2)
    assert value == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-5)
    with pytest.raises(DataError, match="data_range"):
        create("PSNR")(torch.rand(1, 1, 4, 4) * 10, torch.rand(1, 1, 4, 4) * 10)
    with pytest.raises(DataError, match="same shape"):
        create("MSE")(torch.rand(1, 1, 4, 4), torch.rand(1, 2, 4, 4))


# --------------------------------------------------------------------------------------------
# real data: the ovule cells (dense labels) and their boundaries
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ovule_label(sample_data):
    with h5py.File(sample_data / "ovule_boundary.h5", "r") as f:
        return f["label"][...].astype(np.int64)


def test_ovule_boundaries_score_well(ovule_label):
    label = ovule_label[:, 64:128, 64:128]
    boundary = find_boundaries(label)
    pred = torch.from_numpy(boundary[None, None].astype(np.float32))
    target = torch.from_numpy(label[None, None])
    before = target.clone()
    arand = create("BoundaryAdaptedRandError")(pred, target)
    assert 0 < arand < 0.2
    assert arand == pytest.approx(0.1633307336976152, abs=1e-9)  # the reference's value
    ap = create("BoundaryAveragePrecision", min_instance_size=1000)(pred, target)
    assert ap > 0.5
    assert ap == pytest.approx(0.5666254578754579, abs=1e-9)  # the reference's value
    assert torch.equal(target, before)
    # scored against cells without their boundary voxels the prediction is (almost) perfect
    inner = torch.from_numpy(np.where(boundary, 0, label)[None, None])
    assert create("BoundaryAdaptedRandError")(pred, inner) < 1e-6
    assert create("BoundaryAveragePrecision")(pred, inner) > 0.9


def test_ovule_reference_failing_crop_is_handled(ovule_label):
    # the reference's tests crop [64:128] along z of this 32-slice volume: an empty array
    label = ovule_label[64:128, 64:128, 64:128]
    target = torch.from_numpy(label.reshape((1, 1) + label.shape))
    assert math.isnan(create("AdaptedRandError")(target, target))  # undefined, no crash
    assert create("AdaptedRandError", empty_target="reference")(target, target) == 0.0
    boundary = create("BoundaryAdaptedRandError", empty_target="reference")
    assert boundary(target.float(), target) == 0.0
    assert create("BoundaryAveragePrecision")(target.float(), target) == 0.0


# --------------------------------------------------------------------------------------------
# values computed by pytorch-3dunet 1.9.6 on the same batch and config dicts
# --------------------------------------------------------------------------------------------
def _parity_batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    shape = (2, 6, 20, 20)
    field = ndi.gaussian_filter(rng.standard_normal(shape), sigma=(0, 1, 2, 2))
    gt = np.stack([measure.label(f > 0, connectivity=1) for f in field]).astype(np.int64)
    noisy = field + 0.3 * ndi.gaussian_filter(rng.standard_normal(shape), sigma=(0, 1, 1, 1))
    fg = 1 / (1 + np.exp(-4 * noisy / noisy.std()))
    edges = np.stack([find_boundaries(g, mode="inner") for g in gt]).astype(np.float64)
    bd = np.clip(ndi.gaussian_filter(edges, (0, 0.5, 0.5, 0.5)) * 1.5, 0, 1)
    pred = np.stack([fg, bd], axis=1).astype(np.float32)
    masks = (rng.random(pred.shape) < pred).astype(np.float32)
    return {
        "pred": pred,
        "masks": masks,
        "classes": rng.integers(0, 2, shape).astype(np.int64),
        "gt": np.stack([gt > 0, gt], axis=1).astype(np.int64),
        "seg": np.stack([measure.label(f > 0.5, connectivity=1) for f in fg])[:, None],
        "noisy": (masks + 0.2 * rng.standard_normal(masks.shape)).astype(np.float32),
    }


REFERENCE_VALUES = [
    ({"name": "DiceCoefficient"}, "pred", "masks", 0.8867261409759521),
    ({"name": "MeanIoU"}, "pred", "masks", 0.7342365980148315),
    ({"name": "MeanIoU", "skip_background": False}, "pred", "classes", 0.32147377729415894),
    ({"name": "AdaptedRandError", "use_last_target": True}, "seg", "gt", 0.16326943453842413),
    (
        {"name": "BoundaryAdaptedRandError", "threshold": 0.4, "use_first_input": True},
        "pred",
        "gt",
        0.09601950801869757,
    ),
    ({"name": "BoundaryAdaptedRandError", "input_channel": 1}, "pred", "gt", 0.37283624947928545),
    (
        {"name": "GenericAdaptedRandError", "input_channels": [0, 1], "invert_channels": [1]},
        "pred",
        "gt",
        0.09517379953792754,
    ),
    (
        {"name": "BlobsAveragePrecision", "metric": "ap", "use_last_target": True},
        "pred",
        "gt",
        0.33749999999999997,
    ),
    (
        {"name": "BlobsAveragePrecision", "metric": "acc", "min_instance_size": 10},
        "pred",
        "gt",
        0.8333333333333333,
    ),
    ({"name": "BlobsBoundaryAveragePrecision"}, "pred", "gt", 0.006818181818181818),
    (
        {"name": "BoundaryAveragePrecision", "input_channel": 1, "min_instance_size": 5},
        "pred",
        "gt",
        0.0375,
    ),
    ({"name": "PSNR"}, "noisy", "masks", 14.117127055362515),
    ({"name": "MSE"}, "noisy", "masks", 0.03875139083316735),
]


def test_reference_values():
    batch = _parity_batch()
    for spec, pred_key, target_key, expected in REFERENCE_VALUES:
        metric = registry.create("metrics", dict(spec))
        value = float(
            metric(torch.from_numpy(batch[pred_key]), torch.from_numpy(batch[target_key]))
        )
        assert value == pytest.approx(expected, abs=1e-5), spec
