"""Merging watershed fragments that no predicted boundary separates (SeededWatershed
``merge_threshold``): contact statistics, average agglomeration, the real ovule cells."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import adapted_rand_error

from unet_core import registry
from unet_core.errors import ConfigError
from unet_plugins.postprocessors.agglomeration import (
    average_agglomeration,
    contact_statistics,
    merge_contacts,
)


def test_contact_statistics_by_hand():
    labels = np.array([[[1, 1, 2], [0, 3, 2]]])  # (1, 2, 3)
    boundary = np.array([[[0.1, 0.3, 0.5], [0.9, 0.7, 0.2]]])
    pairs, sums, counts = contact_statistics(labels, boundary)
    # 1-2: (0,0,1)-(0,0,2): (0.3 + 0.5) / 2; 1-3: (0,0,1)-(0,1,1): (0.3 + 0.7) / 2;
    # 2-3: (0,1,1)-(0,1,2): (0.7 + 0.2) / 2; label 0 has no contacts
    assert pairs.tolist() == [[1, 2], [1, 3], [2, 3]]
    np.testing.assert_allclose(sums, [0.4, 0.5, 0.45])
    assert counts.tolist() == [1, 1, 1]


def test_block_contacts_add_up_to_the_whole_volume():
    rng = np.random.default_rng(0)
    labels = ndi.zoom(rng.integers(0, 6, (4, 4, 4)), 3, order=0)[:11, :10, :12]
    boundary = rng.random(labels.shape)
    whole = contact_statistics(labels, boundary)
    parts = []
    for z in range(0, 11, 4):
        for y in range(0, 10, 5):
            for x in range(0, 12, 7):
                block = (
                    slice(z, min(z + 4, 11)),
                    slice(y, min(y + 5, 10)),
                    slice(x, min(x + 7, 12)),
                )
                # the block plus one plane on its high faces (inside the volume)
                window = tuple(slice(s.start, s.stop + 1) for s in block)
                own = tuple(s.stop - s.start for s in block)
                parts.append(contact_statistics(labels[window], boundary[window], own))
    summed = merge_contacts(parts)
    np.testing.assert_array_equal(summed[0], whole[0])
    np.testing.assert_allclose(summed[1], whole[1])
    np.testing.assert_array_equal(summed[2], whole[2])
    assert whole[2].sum() > 100


def test_average_agglomeration_adds_up_the_merged_contacts():
    # 1-2 mean 0.1, 2-3 mean 0.4, 1-3 mean 0.9; 4 alone with 3 at 0.45 but 1-2-3 grows first
    pairs = np.array([[1, 2], [2, 3], [1, 3], [3, 4]])
    sums = np.array([1.0, 4.0, 9.0, 4.5])
    counts = np.array([10, 10, 10, 10])
    lut = average_agglomeration((pairs, sums, counts), 5, threshold=0.5)
    # 1+2 first (0.1); the group's contact with 3 is then (4 + 9) / 20 = 0.65: no merge
    # (single linkage would join 3 through 2's 0.4); 3-4 at 0.45 merges; 5 has no contact
    assert lut.tolist() == [0, 1, 1, 3, 3, 5]
    assert average_agglomeration((pairs, sums, counts), 5, threshold=0.05).tolist() == list(
        range(6)
    )
    # everything below 0.95 joins, each label maps to its group's smallest label
    assert average_agglomeration((pairs, sums, counts), 5, 0.95).tolist() == [0, 1, 1, 1, 1, 5]


def _dumbbell_and_neighbour(gap: bool) -> tuple[np.ndarray, np.ndarray]:
    """A boundary map (1, Z, Y, X): a dumbbell cell (two lobes joined by a neck, no membrane
    inside) beside a second cell behind a membrane plane (with a small hole if ``gap``)."""
    shape = (20, 24, 60)
    z, y, x = np.indices(shape)
    lobes = ((z - 10) ** 2 + (y - 12) ** 2 + (x - 12) ** 2 < 64) | (
        (z - 10) ** 2 + (y - 12) ** 2 + (x - 34) ** 2 < 64
    )
    neck = ((z - 10) ** 2 + (y - 12) ** 2 < 25) & (x > 12) & (x < 34)
    cell = lobes | neck
    truth = np.where(cell, 1, 0)
    truth[(~cell) & (x < 46)] = 2  # the medium around the dumbbell
    truth[x >= 47] = 3  # the neighbour behind the membrane plane at x = 46
    membrane = ndi.morphological_gradient(truth, size=3) > 0
    if gap:
        membrane[8:12, 10:14, 44:49] = False
    boundary = ndi.gaussian_filter(membrane.astype(np.float32), 0.5)
    return (boundary / boundary.max())[None], truth


@pytest.mark.parametrize("gap", [False, True])
def test_merging_joins_the_pieces_of_one_cell_but_not_cells_behind_a_membrane(gap):
    boundary, truth = _dumbbell_and_neighbour(gap)
    spec = {"name": "SeededWatershed", "boundary_channel": 0, "min_distance": 3}
    split = registry.create("postprocessors", spec)(boundary)
    merged = registry.create("postprocessors", {**spec, "merge_threshold": 0.5})(boundary)
    # without merging the dumbbell (one maximum per lobe) is cut in two
    assert len(np.unique(split[truth == 1])) >= 2
    # merged: one object per true region (the dumbbell whole; the neighbour separate even
    # through a hole in the membrane)
    for t in (1, 2, 3):
        values, counts = np.unique(merged[truth == t], return_counts=True)
        assert counts.max() / counts.sum() > 0.9, (t, values, counts)
    owners = {int(np.bincount(merged[truth == t].ravel()).argmax()) for t in (1, 2, 3)}
    assert len(owners) == 3


def test_merge_threshold_needs_a_boundary_channel():
    with pytest.raises(
        ConfigError, match="SeededWatershed.*merge_threshold needs boundary_channel"
    ):
        registry.validate(
            "postprocessors",
            {
                "name": "SeededWatershed",
                "boundary_channel": None,
                "foreground_channel": 0,
                "merge_threshold": 0.5,
            },
        )


def test_merging_on_the_real_ovule_cells(sample_data):
    """The ovule's cells from their own membranes: the distance watershed splits the large,
    lobed cells (ARand ~0.09, 67 segments for 51 labels); merging fragments that no membrane
    separates brings it to the true count within a few cells."""
    with h5py.File(sample_data / "ovule_boundary.h5", "r") as f:
        truth = f["label"][:].astype(np.int64)
    membrane = ndi.morphological_gradient(truth, size=3) > 0
    boundary = ndi.gaussian_filter(membrane.astype(np.float32), 0.5)[None]
    spec = {"name": "SeededWatershed", "boundary_channel": 0, "seed_threshold": 0.4}
    scores = {}
    for threshold in (None, 0.5):
        seg = registry.create(
            "postprocessors", {**spec, "min_size": 50, "merge_threshold": threshold}
        )(boundary / boundary.max())
        scores[threshold] = (adapted_rand_error(truth, seg.astype(np.int64))[0], seg.max())
    assert scores[None][0] > 0.06 and scores[None][1] > 60
    assert scores[0.5][0] < 0.025 and 40 <= scores[0.5][1] <= 50
