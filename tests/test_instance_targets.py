"""Instance targets (LabelToDistance) and what segments them (SeededWatershed on a distance
channel, size filters with min_size learnt from training labels), on synthetic blobs with known
answers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import ndimage as ndi

from unet_core import registry
from unet_core.errors import ConfigError, DataError


def ball(shape, centre, radius):
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2


def touching_balls(shape=(24, 24, 40)) -> np.ndarray:
    """Two touching balls (labels 3 and 7) and a small one (label 9) apart."""
    labels = np.zeros(shape, dtype=np.uint16)
    labels[ball(shape, (12, 12, 12), 8)] = 3
    labels[ball(shape, (12, 12, 26), 8) & (labels == 0)] = 7
    labels[ball(shape, (4, 4, 36), 2)] = 9
    return labels


def transform(**params):
    return registry.create("transforms", {"name": "LabelToDistance", **params})


def _scipy_distance(labels: np.ndarray, sampling) -> np.ndarray:
    """The independent per-object computation: scipy's EDT of each object's own mask."""
    out = np.zeros(labels.shape, dtype=np.float64)
    for k in np.unique(labels):
        if k > 0:
            mask = labels == k
            out[mask] = ndi.distance_transform_edt(mask, sampling=sampling)[mask]
    return out


@pytest.mark.parametrize("sampling", [(1.0, 1.0, 1.0), (2.0, 1.0, 0.5)])
def test_fast_edt_equals_scipy_per_object(sampling):
    from unet_plugins.transforms.distance import instance_distance

    labels = touching_balls()
    labels[0:5, 10:14, 0:6] = 11  # an object cut by the volume's edge
    np.testing.assert_allclose(
        instance_distance(labels, sampling), _scipy_distance(labels, sampling), rtol=1e-6
    )


def test_foreground_and_normalised_distance_channels():
    labels = touching_balls()
    out = transform(sampling=[1.0, 1.0, 1.0])(labels, np.random.default_rng(0))
    assert out.shape == (2, *labels.shape) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], labels > 0)
    distance = out[1]
    assert distance[labels == 0].max() == 0
    for k in (3, 7, 9):  # every object peaks at 1, whatever its size
        assert distance[labels == k].max() == pytest.approx(1.0)
        assert distance[labels == k].min() > 0
    assert distance[12, 12, 12] == pytest.approx(1.0)  # the centre of a ball
    # where the two balls touch the distance is the lowest of each ball
    assert distance[12, 12, 19] < 0.2


def test_foreground_boundary_and_label_match_standard_label_to_boundary():
    labels = touching_balls()
    rng = np.random.default_rng(0)
    out = transform(boundary=True, distance=False, append_label=True, ignore_index=None)(
        labels, rng
    )
    reference = registry.create(
        "transforms", {"name": "StandardLabelToBoundary", "foreground": True, "append_label": True}
    )(labels, rng)
    np.testing.assert_array_equal(out, reference.astype(np.float32))


def test_ignore_index_is_written_into_every_channel():
    labels = touching_balls().astype(np.int32)
    labels[0, 0, :5] = -1
    out = transform(boundary=True, ignore_index=-1)(labels, np.random.default_rng(0))
    assert out.shape[0] == 3
    assert (out[:, 0, 0, :5] == -1).all()


def test_no_channel_at_all_is_a_config_error():
    with pytest.raises(ConfigError):
        transform(foreground=False, distance=False)


# -- SeededWatershed on a distance channel, size filters ----------------------------------------
def _watershed(**params):
    spec = {"name": "SeededWatershed", "boundary_channel": None, "foreground_channel": 0}
    return registry.create("postprocessors", {**spec, **params})


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return len(pairs[0]) == len(np.unique(a)) == len(np.unique(b))


def test_watershed_on_a_predicted_distance_recovers_touching_objects():
    from unet_plugins.transforms.distance import normalised_distance

    labels = touching_balls()
    prediction = np.stack([(labels > 0).astype(np.float32), normalised_distance(labels)])
    segmented = _watershed(distance_channel=1, seed_method="components", sigma=0)(prediction)
    assert segmented.max() == 3
    assert _same_partition(segmented, labels)
    # the foreground alone (connected components) merges the touching pair
    merged = registry.create("postprocessors", {"name": "ConnectedComponents"})(prediction)
    assert merged.max() == 2


def test_distance_channel_needs_a_foreground_channel():
    with pytest.raises(ConfigError) as err:
        registry.create(
            "postprocessors",
            {"name": "SeededWatershed", "boundary_channel": None, "distance_channel": 1},
        )
    assert "foreground_channel" in str(err.value)


def _fragmented() -> np.ndarray:
    """Two touching balls, the second's distance map with a spurious peak cut off as a sliver,
    plus an isolated 8-voxel speck."""
    from unet_plugins.transforms.distance import normalised_distance

    labels = touching_balls()
    labels[labels == 9] = 0
    distance = normalised_distance(labels)
    distance[12, 12, 33:35] = 1.0  # a second seed at the edge of ball 7
    fg = (labels > 0).astype(np.float32)
    fg[0:2, 0:2, 0:2] = 1.0
    distance[0:2, 0:2, 0:2] = 1.0
    return np.stack([fg, distance])


def test_small_objects_merge_into_neighbours_or_drop():
    prediction = _fragmented()
    common = {"distance_channel": 1, "seed_method": "components", "sigma": 0}
    raw = _watershed(**common)(prediction)
    assert raw.max() == 4  # two balls, the sliver, the speck
    merged = _watershed(**common, min_size=50)(prediction)
    dropped = _watershed(**common, min_size=50, small_objects="drop")(prediction)
    assert merged.max() == dropped.max() == 2
    assert merged[0, 0, 0] == dropped[0, 0, 0] == 0  # the isolated speck is gone in both
    fg = prediction[0] > 0.5
    fg[0:2, 0:2, 0:2] = False
    np.testing.assert_array_equal(merged > 0, fg)  # the sliver went to its neighbour
    assert (dropped > 0).sum() < fg.sum()  # ... or to the background


def _label_file(path, labels):
    with h5py.File(path, "w") as f:
        f["label"] = labels
    return str(path)


def test_min_size_auto_learns_inner_and_edge_limits_from_training_objects(tmp_path):
    from unet_plugins.postprocessors.sizes import object_sizes, resolve_min_size

    labels = np.zeros((20, 40, 40), dtype=np.uint16)
    sizes = []
    for k in range(16):  # 16 inner cubes of 2..5 voxels a side
        side = 2 + k % 4
        z, y, x = 2 + (k // 8) * 9, 2 + (k % 8 // 2) * 9, 2 + (k % 2) * 18
        labels[z : z + side, y : y + side, x : x + side] = k + 1
        sizes.append(side**3)
    labels[0, 0, 0:2] = 99  # objects cut by the edge: 2 and 6 voxels, learnt apart
    labels[19, 39, 0:6] = 98
    assert sorted(object_sizes(labels)) == sorted(sizes)
    assert sorted(object_sizes(labels, edge=True)) == [2, 6]
    path = _label_file(tmp_path / "train.h5", labels)
    spec = {"name": "ConnectedComponents", "min_size": "auto", "size_labels": [path]}
    cc = registry.create("postprocessors", {**spec, "size_percentile": 50, "size_factor": 0.5})
    assert cc.min_size.inner == round(0.5 * np.percentile(sizes, 50)) == 23
    assert cc.min_size.edge == 2  # half the median of 2 and 6
    assert resolve_min_size(cc.config) == cc.min_size
    # used: an inner object below its limit disappears, one above stays; an object at the
    # edge is held to the edge limit only
    prob = np.zeros((1, 20, 40, 40), dtype=np.float32)
    prob[0, 2:4, 2:4, 2:4] = 1.0  # 8 voxels inside < 23
    prob[0, 10:15, 10:15, 10:15] = 1.0  # 125 voxels
    prob[0, 0, 30, 30:34] = 1.0  # 4 voxels at the edge >= 2
    labels = cc(prob)
    assert labels.max() == 2 and labels[0, 30, 31] > 0 and labels[2, 2, 2] == 0
    # a number applies to every object alike
    fixed = registry.create("postprocessors", {"name": "ConnectedComponents", "min_size": 10})
    assert fixed(prob).max() == 1


def test_min_size_auto_needs_labels_and_finds_missing_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        registry.create("postprocessors", {"name": "ConnectedComponents", "min_size": "auto"})
    assert "size_labels" in str(err.value)
    missing = str(tmp_path / "nope.h5")
    with pytest.raises(DataError) as err:
        registry.create(
            "postprocessors",
            {"name": "ConnectedComponents", "min_size": "auto", "size_labels": [missing]},
        )
    assert "nope.h5" in str(err.value)
    empty = _label_file(tmp_path / "empty.h5", np.zeros((4, 4, 4), dtype=np.uint8))
    with pytest.raises(DataError) as err:
        registry.create(
            "postprocessors",
            {"name": "SeededWatershed", "min_size": "auto", "size_labels": [empty]},
        )
    assert "no objects" in str(err.value)
