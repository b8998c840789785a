"""Transforms and pipelines: every transform against a known answer, raw/label sync, seeding."""

from __future__ import annotations

import multiprocessing
import pickle

import h5py
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from unet_core import registry
from unet_core.engine.pipeline import Pipeline, build_pipeline, sync_problem, transform_rng
from unet_core.errors import ConfigError, DataError, PluginError
from unet_core.interfaces import ComponentConfig
from unet_plugins.transforms.spatial import smooth_reflect

ALL = [
    "RandomFlip", "RandomRotate90", "RandomRotate", "ElasticDeformation", "CropToFixed",
    "RandomContrast", "RandomGammaCorrection", "AdditiveGaussianNoise", "AdditivePoissonNoise",
    "GaussianBlur3D", "Standardize", "PercentileNormalizer", "Normalize",
    "StandardLabelToBoundary", "BlobsToMask", "LabelToAffinities", "LabelToZAffinities",
    "LabelToBoundaryAndAffinities", "LabelToMaskAndAffinities", "RandomLabelToAffinities",
    "Relabel", "RgbToLabel", "ToTensor", "LabelToTensor", "Identity",
]  # fmt: skip
SPATIAL = {"RandomFlip", "RandomRotate90", "RandomRotate", "ElasticDeformation", "CropToFixed"}


def make(name: str, stats: dict | None = None, **params):
    """A transform built exactly as the pipeline builds it (validated by the registry)."""
    return build_pipeline([{"name": name, **params}], stats).transforms[0]


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def ovule(sample_data):
    """A real dense cell-label crop (Z,Y,X) uint16 and its raw, from the ovule volume."""
    with h5py.File(sample_data / "ovule_boundary.h5", "r") as f:
        return f["label"][:16, :64, :64], f["raw"][:16, :64, :64]


def _diagonal_label_volume(size: int, init: int = 1) -> np.ndarray:
    """The reference test suite's label: value 3 where i + j > 2k, else ``init``."""
    i, j, k = np.indices((size, size, size))
    return np.where(i + j > 2 * k, 3, init).astype(np.int32)


def _is_relabelling(label: np.ndarray, raw: np.ndarray) -> bool:
    """True if raw is a one-to-one function of label voxel for voxel."""
    pairs = np.unique(np.stack([label.ravel(), raw.ravel()]), axis=1)
    return len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


# -- registry and pipeline ---------------------------------------------------------------------


def test_every_reference_transform_is_registered_with_its_spatial_flag():
    assert set(ALL) <= set(registry.list("transforms"))
    for name in ALL:
        assert registry.get("transforms", name).spatial is (name in SPATIAL), name


def test_pipeline_streams_depend_on_seed_kind_and_position():
    a = transform_rng(7, True, 0).random(4)
    assert np.array_equal(a, np.random.default_rng([7, 0, 0]).random(4))
    assert np.array_equal(transform_rng(7, False, 2).random(4), rng([7, 1, 2]).random(4))
    assert not np.array_equal(a, transform_rng(7, False, 0).random(4))
    assert not np.array_equal(a, transform_rng(8, True, 0).random(4))


def test_bad_entry_is_reported_with_its_list_index():
    specs = [{"name": "Standardize"}, {"name": "RandomFlip"}, {"name": "RandomFlip", "p": 1}]
    with pytest.raises(
        ConfigError,
        match=r"^loaders\.train\.transformer\.raw\[2\]: .*'RandomFlip': p: Extra inputs",
    ):
        build_pipeline(specs, where="loaders.train.transformer.raw")
    with pytest.raises(PluginError, match=r"transformer\.label\[0\].*did you mean `Standardize`"):
        build_pipeline([{"name": "Standardise"}], where="transformer.label")
    with pytest.raises(ConfigError, match=r"\[0\].*expand_dims"):
        build_pipeline([{"name": "ToTensor"}])  # expand_dims is required, as in the reference


def test_empty_pipeline_is_identity():
    x = np.arange(8).reshape(2, 2, 2)
    assert build_pipeline(None)(x, 3) is x
    assert len(build_pipeline([])) == 0


def test_pipeline_pickles_and_gives_identical_results():
    specs = [
        {"name": "Standardize"},
        {"name": "RandomFlip"},
        {"name": "RandomRotate", "axes": [[2, 1]], "angle_spectrum": 20, "order": 1},
        {"name": "ElasticDeformation", "spline_order": 3, "execution_probability": 1.0},
        {"name": "AdditiveGaussianNoise", "execution_probability": 1.0},
        {"name": "ToTensor", "expand_dims": True},
    ]
    pipe = build_pipeline(specs, {"mean": 1.0, "std": 2.0, "pmin": None, "pmax": None})
    x = rng(1).random((8, 24, 24), dtype=np.float32)
    clone = pickle.loads(pickle.dumps(pipe))
    assert repr(clone) == repr(pipe)
    assert torch.equal(clone(x, 11), pipe(x, 11))


def test_pipeline_runs_in_a_spawned_worker():
    """Windows/macOS DataLoader workers start with spawn: nothing may rely on fork state."""
    specs = [{"name": "RandomFlip"}, {"name": "RandomRotate90"}, {"name": "GaussianBlur3D"}]
    pipe = build_pipeline(specs)
    x = rng(2).random((4, 16, 16))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        remote = pool.starmap(pipe, [(x, 5), (x, 6)])
    assert np.array_equal(remote[0], pipe(x, 5))
    assert np.array_equal(remote[1], pipe(x, 6))


def test_same_seed_reproduces_and_other_seeds_differ():
    specs = [
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "ElasticDeformation", "spline_order": 1, "execution_probability": 1.0},
        {"name": "AdditivePoissonNoise", "execution_probability": 1.0},
    ]
    pipe = build_pipeline(specs)
    x = rng(3).random((6, 20, 20))
    assert np.array_equal(pipe(x, 42), pipe(x, 42))
    outs = [pipe(x, s) for s in range(6)]
    assert all(not np.array_equal(outs[0], o) for o in outs[1:])


# -- raw/label synchronisation -------------------------------------------------------------------


def test_flipped_rotated_label_matches_raw_through_two_pipelines(ovule):
    """Raw = label as floats; intensity transforms only in raw; same spatial choices."""
    label, _ = ovule
    raw = label.astype(np.float32) + 1.0
    geometry = [
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "RandomRotate", "axes": [[2, 1]], "angle_spectrum": 30},
        {"name": "ElasticDeformation", "spline_order": 0, "execution_probability": 1.0,
         "sigma": 4, "alpha": 30},
        {"name": "CropToFixed", "size": [48, 40]},
    ]  # fmt: skip
    intensity = [
        {"name": "RandomContrast", "execution_probability": 1.0},
        {"name": "RandomGammaCorrection", "execution_probability": 1.0},
        {"name": "Normalize"},
    ]
    raw_specs = [intensity[0], *geometry[:2], intensity[1], *geometry[2:], intensity[2]]
    raw_pipe, label_pipe = build_pipeline(raw_specs), build_pipeline(geometry)
    changed = 0
    for seed in range(4):
        raw_out, label_out = raw_pipe(raw, seed), label_pipe(label, seed)
        assert raw_out.shape == label_out.shape == (16, 48, 40)
        assert _is_relabelling(label_out, raw_out)
        changed += not np.array_equal(label_out, label[:, :48, :40])
    assert changed >= 3


def test_reference_augmentation_case_three_label_channels_equal_raw(ovule):
    """Reference test_dataset 'augmentation': 4D label of stacked raw copies stays equal."""
    _, raw = ovule
    raw = raw.astype(np.float32)
    label = np.stack([raw] * 3)
    specs = [
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "RandomRotate", "angle_spectrum": 15},
        {"name": "ElasticDeformation", "spline_order": 0, "execution_probability": 1.0},
    ]
    raw_pipe = build_pipeline([{"name": "Identity"}, *specs, {"name": "Identity"}])
    label_pipe = build_pipeline(specs)
    for seed in (0, 1):
        r, lab = raw_pipe(raw, seed), label_pipe(label, seed)
        for c in range(3):
            assert np.array_equal(lab[c], r)


def test_sync_problem_names_lists_that_would_misalign():
    raw = build_pipeline(
        [{"name": "Standardize"}, {"name": "RandomFlip"},
         {"name": "ElasticDeformation", "spline_order": 3},
         {"name": "ToTensor", "expand_dims": True}]
    )  # fmt: skip
    label = build_pipeline(
        [{"name": "RandomFlip"}, {"name": "ElasticDeformation", "spline_order": 0},
         {"name": "StandardLabelToBoundary"}]
    )  # fmt: skip
    assert sync_problem({"raw": raw, "label": label, "weight": None}) is None
    missing = build_pipeline([{"name": "ElasticDeformation", "spline_order": 0}])
    msg = sync_problem({"raw": raw, "label": missing}, where="loaders.train.transformer")
    assert msg.startswith("loaders.train.transformer: the spatial transforms of 'raw'")
    assert "RandomFlip(axis_prob=0.5)" in msg and "'label'" in msg
    crop = build_pipeline([{"name": "CropToFixed", "size": [8, 8]}])
    centered = build_pipeline([{"name": "CropToFixed", "size": [8, 8], "centered": True}])
    assert "centered=True" in sync_problem({"raw": crop, "label": centered})


def test_elastic_deformation_keeps_raw_and_label_in_sync(ovule):
    label, _ = ovule
    t = make("ElasticDeformation", spline_order=0, execution_probability=1.0)
    raw = label.astype(np.float64)
    for seed in (0, 1):
        out_label = t(label, rng(seed))
        out_raw = t(np.stack([raw, raw * 2]), rng(seed))
        assert not np.array_equal(out_label, label)
        assert np.array_equal(out_raw[0], out_label) and np.array_equal(out_raw[1], 2 * out_label)
        assert out_label.dtype == label.dtype


def test_elastic_apply_3d_false_leaves_z_alone_on_4d_input():
    z_index = np.broadcast_to(np.arange(6, dtype=float)[:, None, None], (6, 20, 20))
    x = np.stack([z_index, z_index])
    flat = make("ElasticDeformation", spline_order=1, execution_probability=1.0, apply_3d=False,
                sigma=3, alpha=40)  # fmt: skip
    assert np.allclose(flat(x, rng(0)), x)
    full = make("ElasticDeformation", spline_order=1, execution_probability=1.0, sigma=3, alpha=40)
    assert not np.allclose(full(x, rng(0)), x)
    never = make("ElasticDeformation", spline_order=3)  # default probability 0.1
    assert sum(not np.array_equal(never(x, rng(s)), x) for s in range(200)) in range(8, 35)


def test_dct_smoothing_equals_scipy_gaussian_filter():
    noise = rng(4).standard_normal((5, 17, 30))
    for sigma in (1.5, 7, 50):
        assert np.allclose(smooth_reflect(noise, sigma), ndi.gaussian_filter(noise, sigma))


# -- spatial transforms ------------------------------------------------------------------------


def test_random_flip_probabilities_and_channels():
    x = rng(5).random((2, 3, 4, 5))
    assert np.array_equal(make("RandomFlip", axis_prob=1.0)(x, rng()), x[:, ::-1, ::-1, ::-1])
    assert np.array_equal(make("RandomFlip", axis_prob=0.0)(x, rng()), x)
    t = make("RandomFlip")
    seen = set()
    for s in range(40):
        out = t(x[0], rng(s))
        match = [
            axes
            for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]
            if np.array_equal(out, np.flip(x[0], axes) if axes else x[0])
        ]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 8


def test_random_rotate90_rotates_in_yx_plane():
    x = rng(6).random((3, 5, 5))
    t = make("RandomRotate90")
    ks = set()
    for s in range(20):
        out = t(x, rng(s))
        k = [k for k in range(4) if np.array_equal(out, np.rot90(x, k, axes=(1, 2)))]
        assert len(k) == 1
        ks.add(k[0])
        out4 = t(np.stack([x, -x]), rng(s))
        assert np.array_equal(out4[0], out) and np.array_equal(out4[1], -out)
    assert ks == {0, 1, 2, 3}


def _rotation_angle(out, x, plane, spectrum, order=0):
    hits = [
        a
        for a in range(-spectrum, spectrum + 1)
        if np.array_equal(
            out, ndi.rotate(x, a, axes=plane, reshape=False, order=order, mode="reflect")
        )
    ]
    return hits


def test_random_rotate_matches_scipy_rotation_by_an_angle_in_range():
    x = rng(7).random((4, 24, 24))
    t = make("RandomRotate", axes=[[2, 1]], angle_spectrum=6)
    angles = {a for s in range(10) for a in _rotation_angle(t(x, rng(s)), x, (2, 1), 6)[:1]}
    assert len(angles) >= 4 and all(-6 <= a <= 6 for a in angles)
    assert t.angle_spectrum == 6 and t.axes == [(2, 1)] and t.order == 0
    seed = next(s for s in range(10) if not np.array_equal(t(x, rng(s)), x))
    smooth = make("RandomRotate", axes=[[2, 1]], angle_spectrum=6, order=1)(x, rng(seed))
    assert not np.isin(smooth, x).all()  # interpolated, not nearest
    with pytest.raises(ConfigError, match="axes"):
        make("RandomRotate", axes=[[0, 0]])


def test_spatial_transforms_work_on_2d_singleton_z(ovule):
    label = ovule[0][:1]  # (1, 64, 64)
    raw = np.stack([label, label]).astype(np.float32)  # (2, 1, 64, 64)
    for spec in [
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "RandomRotate"},  # default axes include Z planes: rotated in (Y,X) instead
        {"name": "ElasticDeformation", "spline_order": 0, "execution_probability": 1.0,
         "sigma": 5, "alpha": 50},
        {"name": "CropToFixed", "size": [40, 70]},
    ]:  # fmt: skip
        t = make(**spec)
        for seed in range(3):
            out_label, out_raw = t(label, rng(seed)), t(raw, rng(seed))
            assert out_label.shape[0] == 1 and out_raw.shape[:2] == (2, 1)
            assert np.array_equal(out_raw[0], out_label) and np.array_equal(out_raw[1], out_label)
    rotated = make("RandomRotate", angle_spectrum=10)(label, rng(3))
    assert _rotation_angle(rotated[0], label[0], (1, 0), 10)


def test_crop_to_fixed_pads_like_the_reference_when_bigger():
    m = rng(8).random((2, 200, 200))
    out = make("CropToFixed", size=[256, 256])(m, rng())
    assert np.array_equal(out, np.pad(m, ((0, 0), (28, 28), (28, 28)), mode="reflect"))


def test_crop_to_fixed_crops_a_window_and_reaches_every_start():
    y, x = np.indices((130, 200))
    m = np.broadcast_to(y * 1000 + x, (3, 130, 200))
    t = make("CropToFixed", size=[128, 128])
    starts = set()
    for s in range(60):
        out = t(m, rng(s))
        ys, xs = divmod(int(out[0, 0, 0]), 1000)
        assert np.array_equal(out, m[:, ys : ys + 128, xs : xs + 128])
        starts.add(ys)
    assert starts == {0, 1, 2}  # the last position (dim - size) is reachable
    centered = make("CropToFixed", size=[128, 128], centered=True)(m, rng())
    assert np.array_equal(centered, m[:, 1:129, 36:164])
    mixed = make("CropToFixed", size=[140, 100], centered=True)(np.stack([m, m]), rng())
    assert mixed.shape == (2, 3, 140, 100)
    assert np.array_equal(mixed[0, :, 5:135], m[:, :, 50:150])


# -- label conversions -------------------------------------------------------------------------


def test_boundary_of_two_touching_labels():
    label = np.ones((4, 6, 8), dtype=np.uint16)
    label[:, :, 4:] = 2
    out = make("StandardLabelToBoundary")(label, rng())
    expected = np.zeros_like(label, dtype=np.int32)
    expected[:, :, 3:5] = 1
    assert out.shape == (1, 4, 6, 8) and np.array_equal(out[0], expected)
    label[:, :2] = 0
    full = make("StandardLabelToBoundary", foreground=True, append_label=True)(label, rng())
    assert full.shape == (3, 4, 6, 8)
    assert np.array_equal(full[0], label > 0) and np.array_equal(full[2], label)
    assert full[1][:, 1:3].all()  # the background/object interface is a boundary too


def test_boundary_ignore_index_written_back():
    label = np.ones((3, 6, 6), dtype=np.int32)
    label[:, :, 3:] = 2
    label[:, 0] = -1
    out = make("StandardLabelToBoundary", ignore_index=-1, foreground=True)(label, rng())
    assert (out[:, :, 0] == -1).all() and set(np.unique(out)) == {-1, 0, 1}


def test_boundary_on_real_ovule_labels(ovule):
    """Thick boundaries = voxels whose 18-neighbourhood holds more than one label."""
    label, _ = ovule
    out = make("StandardLabelToBoundary", append_label=True)(label[None], rng())
    footprint = ndi.generate_binary_structure(3, 2)
    expected = ndi.grey_dilation(label, footprint=footprint) != ndi.grey_erosion(
        label, footprint=footprint
    )
    assert out.shape == (2, *label.shape)
    assert np.array_equal(out[0], expected) and np.array_equal(out[1], label)
    assert 0.1 < out[0].mean() < 0.5


def test_affinities_on_hand_made_label():
    label = np.ones((4, 5, 6), dtype=np.int64)
    label[:, :, 2:] = 2  # X boundary between x=1 and x=2
    label[2:] = 3  # Z boundary between z=1 and z=2
    out = make("LabelToAffinities", offsets=[1, 2])(label, rng())
    assert out.shape == (6, 4, 5, 6)  # per offset: X, Y, Z
    expected_x1 = np.zeros(label.shape, int)
    expected_x1[:2, :, 1] = 1  # compares x+1 with x
    expected_z1 = np.zeros(label.shape, int)
    expected_z1[1] = 1
    assert np.array_equal(out[0], expected_x1)
    assert not out[1].any() and not out[4].any()  # no Y changes
    assert np.array_equal(out[2], expected_z1)
    expected_x2 = np.zeros(label.shape, int)
    expected_x2[:2, :, 1:3] = 1  # offset 2 compares x+1 with x-1
    assert np.array_equal(out[3], expected_x2)
    z_only = make("LabelToAffinities", offsets=[1], z_offsets=[2], aggregate_affinities=True)
    agg = z_only(label, rng())
    assert agg.shape == (1, 4, 5, 6)
    expected_agg = expected_x1.copy()
    expected_agg[1:3] = 1  # z offset 2 compares z+1 with z-1
    assert np.array_equal(agg[0], expected_agg)
    zaff = make("LabelToZAffinities", offsets=[1, 2], append_label=True)(label, rng())
    assert zaff.shape == (3, 4, 5, 6) and np.array_equal(zaff[0], expected_z1)
    assert np.array_equal(zaff[2], label)


def test_affinities_on_real_ovule_labels(ovule):
    label, _ = ovule
    out = make("LabelToAffinities", offsets=[1, 3])(label, rng())
    assert out.shape == (6, *label.shape) and out.dtype == np.int32
    x1 = np.zeros(label.shape, bool)
    x1[..., :-1] = label[..., 1:] != label[..., :-1]
    y3 = np.zeros(label.shape, bool)
    y3[:, 1:-2] = label[:, 3:] != label[:, :-3]  # c = 2: compares y+2 with y-1
    assert np.array_equal(out[0], x1) and np.array_equal(out[4][:, 1:-2], y3[:, 1:-2])
    agg = make("LabelToAffinities", offsets=[1, 3], aggregate_affinities=True)(label, rng())
    assert np.array_equal(agg[0], out[0:3].any(axis=0)) and np.array_equal(agg[1], out[3:].any(0))


def test_combined_boundary_and_mask_affinities(ovule):
    label, _ = ovule
    both = make("LabelToBoundaryAndAffinities", xy_offsets=[1, 2], z_offsets=[1, 1],
                foreground=True, append_label=True)(label, rng())  # fmt: skip
    boundary = make("StandardLabelToBoundary", foreground=True)(label, rng())
    aff = make("LabelToAffinities", offsets=[1, 2], z_offsets=[1, 1])(label, rng())
    assert both.shape == (2 + 6 + 1, *label.shape)
    assert np.array_equal(both[:2], boundary) and np.array_equal(both[2:8], aff)
    assert np.array_equal(both[8], label)
    mask = make("LabelToMaskAndAffinities", xy_offsets=[1], z_offsets=[1], background=5)
    out = mask(label, rng())
    assert out.shape == (4, *label.shape) and np.array_equal(out[0], label > 5)
    with pytest.raises(ConfigError, match="z_offsets"):
        make("LabelToMaskAndAffinities", xy_offsets=[1, 2], z_offsets=[1])


def test_reference_label_to_boundary_cases():
    label = _diagonal_label_volume(20)
    out = make("LabelToAffinities", offsets=[2, 4], aggregate_affinities=True)(label, rng())
    assert out.shape == (2, 20, 20, 20) and np.array_equal(np.unique(out), [0, 1])
    out = make("LabelToAffinities", offsets=[2, 4])(label, rng())
    assert out.shape == (6, 20, 20, 20) and np.array_equal(np.unique(out), [0, 1])
    ignored = _diagonal_label_volume(20, init=-1)
    t = make("LabelToAffinities", offsets=[2, 4], ignore_index=-1, aggregate_affinities=True)
    assert np.array_equal(np.unique(t(ignored, rng())), [-1, 0, 1])
    r = make("RandomLabelToAffinities")
    assert r(label, rng()).shape == (1, 20, 20, 20)
    out = make("RandomLabelToAffinities", ignore_index=-1)(ignored, rng())
    assert out.shape == (1, 20, 20, 20) and -1 in out


def test_random_label_to_affinities_draws_offsets_and_axes():
    t = make("RandomLabelToAffinities", max_offset=4, z_offset_scale=2)
    assert t.offsets == (1, 2, 3, 4)
    drawn = {tuple(t.pairs(rng(s))[0]) for s in range(200)}
    assert {a for a, _ in drawn} == {0, 1, 2}
    assert {o for a, o in drawn if a != 0} == {1, 2, 3, 4}
    assert {o for a, o in drawn if a == 0} == {1, 2}  # Z offsets halved (at least 1)


def test_blobs_to_mask():
    label = np.zeros((5, 9, 9), dtype=np.int32)
    label[1:4, 2:5, 2:5] = 7
    mask_only = make("BlobsToMask")(label, rng())
    assert mask_only.shape == (1, 5, 9, 9) and np.array_equal(mask_only[0], label > 0)
    out = make("BlobsToMask", boundary=True, append_label=True)(label, rng())
    dilated = ndi.binary_dilation(label > 0, ndi.generate_binary_structure(3, 2))
    assert out.shape == (3, 5, 9, 9)
    assert np.array_equal(out[1], dilated & (label == 0)) and np.array_equal(out[2], label)
    ce = make("BlobsToMask", boundary=True, cross_entropy=True)(label, rng())
    assert ce.shape == (1, 5, 9, 9) and set(np.unique(ce)) == {0, 1, 2}
    assert np.array_equal(ce[0] == 2, out[1].astype(bool))


def test_relabel_reference_example_and_options():
    label = np.array([[10, 10, 10], [0, 0, 0], [5, 5, 5]])
    assert np.array_equal(make("Relabel")(label, rng()), [[1, 1, 1], [0, 0, 0], [2, 2, 2]])
    no_cc = make("Relabel", run_cc=False)(np.array([10, 10, 0, 6, 6]), rng())
    assert np.array_equal(no_cc, [2, 2, 0, 1, 1])
    split = make("Relabel")(np.array([[3, 0, 3]]), rng())  # one id, two components
    assert np.array_equal(split, [[1, 0, 2]])
    with_orig = make("Relabel", append_original=True)(label, rng())
    assert with_orig.shape == (2, 3, 3) and np.array_equal(with_orig[1], label)
    with pytest.raises(ConfigError, match="append_original"):
        make("Relabel", ignore_label=0)


def test_rgb_to_label_and_label_to_tensor_from_config():
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[1, 2] = (1, 2, 3)
    rgb[3, 4] = (255, 255, 255)
    ids = make("RgbToLabel")(rgb, rng())
    assert ids[1, 2] == 65536 + 2 * 256 + 3 and ids[3, 4] == 2**24 - 1 and ids[0, 0] == 0
    chw = np.moveaxis(rgb, -1, 0)[:, None]  # (3, 1, Y, X) as the DSB dataset makes it
    assert np.array_equal(make("RgbToLabel")(chw, rng()), ids[None])
    with pytest.raises(DataError, match="RGB"):
        make("RgbToLabel")(np.zeros((4, 5)), rng())
    tensor = make("LabelToTensor")(ids.astype(np.uint16), rng())
    assert tensor.dtype == torch.int64 and tensor.shape == (4, 5)


def test_label_transforms_reject_multichannel_input():
    with pytest.raises(DataError, match=r"\(Z,Y,X\)"):
        make("StandardLabelToBoundary")(np.zeros((2, 3, 4, 5), int), rng())


# -- normalizations ----------------------------------------------------------------------------


def test_standardize_per_patch_channelwise_and_global(ovule):
    _, raw = ovule
    out = make("Standardize")(raw, rng())
    ref = (raw - raw.mean()) / raw.std()
    assert out.dtype == np.float32 and np.allclose(out, ref, atol=1e-5)
    x = np.stack([raw, raw * 3.0 + 7]).astype(np.float64)
    per = make("Standardize", channelwise=True)(x, rng())
    assert per.dtype == np.float64 and np.allclose(per[0], per[1])
    stats = {"mean": 10.0, "std": 4.0, "pmin": None, "pmax": None}
    assert np.allclose(make("Standardize", stats)(raw, rng()), (raw - 10.0) / 4.0)
    own = make("Standardize", stats, mean=0, std=2)
    assert np.allclose(own(raw, rng()), raw / 2.0)  # the entry's own keys win over stats
    none = make("Standardize", {"mean": None, "std": None, "pmin": None, "pmax": None})
    assert np.allclose(none(raw, rng()), ref, atol=1e-5)
    assert np.all(make("Standardize")(np.full((2, 3, 3), 5.0), rng()) == 0)
    with pytest.raises(ConfigError, match="mean and std"):
        make("Standardize", mean=1.0)


def test_reference_transformer_config_cases():
    stats = {"mean": 0, "std": 1}
    raw = build_pipeline(
        [
            {"name": "Standardize"},
            {"name": "RandomContrast", "execution_probability": 0.5},
            {"name": "RandomFlip"},
            {"name": "RandomRotate90"},
            {"name": "RandomRotate", "angle_spectrum": 17, "axes": [[2, 1]], "mode": "reflect"},
            {"name": "ToTensor", "expand_dims": True},
        ],
        stats,
    ).transforms
    assert raw[0].fixed == (0.0, 1.0)
    assert raw[1].execution_probability == 0.5
    assert raw[4].angle_spectrum == 17 and raw[4].axes == [(2, 1)] and raw[4].mode == "reflect"
    assert raw[5].expand_dims
    label = build_pipeline(
        [
            {"name": "LabelToAffinities", "offsets": [2, 4, 6, 8]},
            {"name": "RandomLabelToAffinities", "max_offset": 4},
            {"name": "ToTensor", "expand_dims": False, "dtype": "int64"},
        ]
    ).transforms
    assert len(label[0].kernels) == 12
    assert label[1].offsets == (1, 2, 3, 4)
    assert not label[2].expand_dims and label[2].dtype == "int64"


def test_percentile_normalizer_patch_and_global_values(ovule):
    _, raw = ovule
    lo, hi = np.percentile(raw, [1.0, 99.6])
    out = make("PercentileNormalizer")(raw, rng())
    assert np.allclose(out, (raw - lo) / (hi - lo + 1e-10), atol=1e-6)
    stats = {"pmin": 10.0, "pmax": 210.0, "mean": 50.0, "std": 5.0}
    glob = make("PercentileNormalizer", stats)(raw, rng())  # values, not percentiles (§12.17)
    assert np.allclose(glob, (raw - 10.0) / 200.0, atol=1e-6)
    lo5, hi95 = np.percentile(raw, [5, 95])
    explicit = make("PercentileNormalizer", stats, pmin=5, pmax=95)(raw, rng())
    assert np.allclose(explicit, (raw - lo5) / (hi95 - lo5), atol=1e-6)
    x = np.stack([raw, raw * 2.0]).astype(np.float32)
    per = make("PercentileNormalizer", channelwise=True)(x, rng())
    assert np.allclose(per[0], per[1], atol=1e-5)
    with pytest.raises(ConfigError, match="pmin"):
        make("PercentileNormalizer", pmin=99, pmax=1)


def test_normalize_ranges():
    x = np.array([[[0.0, 5.0, 10.0]]])
    assert np.allclose(make("Normalize")(x, rng()), [[[-1, 0, 1]]])
    assert np.allclose(make("Normalize", norm01=True)(x, rng()), [[[0, 0.5, 1]]])
    fixed = make("Normalize", min_value=2, max_value=6, norm01=True)(x, rng())
    assert np.allclose(fixed, [[[0, 0.75, 1]]])
    with pytest.raises(ConfigError, match="max_value"):
        make("Normalize", min_value=3, max_value=3)


# -- intensity augmentations -------------------------------------------------------------------


def test_gaussian_noise_statistics():
    zeros = np.zeros((32, 32, 32), dtype=np.float32)
    out = make("AdditiveGaussianNoise", scale=[0.5, 0.5], execution_probability=1.0)(zeros, rng())
    assert out.dtype == np.float32
    assert abs(out.mean()) < 0.01 and abs(out.std() - 0.5) < 0.01
    off = make("AdditiveGaussianNoise", execution_probability=0.0)
    assert off(zeros, rng()) is zeros


def test_poisson_noise_statistics():
    zeros = np.zeros((32, 32, 32), dtype=np.uint8)
    out = make("AdditivePoissonNoise", lam=[2.0, 2.0], execution_probability=1.0)(zeros, rng())
    assert out.dtype == np.float32
    assert abs(out.mean() - 2.0) < 0.03 and abs(out.var() - 2.0) < 0.06
    assert np.array_equal(out, np.round(out)) and out.min() >= 0


def test_execution_probability_is_honoured():
    t = make("AdditiveGaussianNoise", execution_probability=0.3)
    x = np.zeros((1, 2, 2))
    ran = sum(not np.array_equal(t(x, rng(s)), x) for s in range(1000))
    assert 250 < ran < 350


def test_gamma_correction_decreases_mean_for_gamma_above_one():
    m = rng(9).random((20, 40, 40))
    out = make("RandomGammaCorrection", gamma=[1.1, 2.0], execution_probability=1.0)(m, rng())
    assert out.mean() < m.mean() and out.min() >= 0 and out.max() <= 1


def test_random_contrast_formula_and_clipping():
    x = np.linspace(-3, 3, 60).reshape(3, 4, 5)
    out = make("RandomContrast", execution_probability=1.0)(x, rng(1))
    factor = out[x != 0] / x[x != 0]
    assert np.allclose(factor, factor[0]) and 0.5 <= factor[0] <= 1.5
    assert np.abs(out).max() > 1  # no clipping unless asked (the reference always clipped)
    ref = make("RandomContrast", execution_probability=1.0, clip=[-1, 1])(x, rng(1))
    assert np.array_equal(ref, np.clip(out, -1, 1))
    up = make("RandomContrast", execution_probability=1.0, alpha=[2, 2], mean=1.0, clip="input")
    assert np.allclose(up(x, rng()), np.clip(1 + 2 * (x - 1), -3, 3))


def test_gaussian_blur_uses_the_generator_and_keeps_channels_apart():
    x = np.zeros((2, 21, 21, 21))
    x[0, 10, 10, 10] = 1.0
    t = make("GaussianBlur3D", sigma=[0.5, 2.0], execution_probability=1.0)
    a, b, c = t(x, rng(1)), t(x, rng(1)), t(x, rng(2))
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert not a[1].any() and np.isclose(a[0].sum(), 1.0)
    sigmas = np.linspace(0.5, 2.0, 1501)
    err = [np.abs(ndi.gaussian_filter(x[0], s, mode="nearest") - a[0]).max() for s in sigmas[::50]]
    assert min(err) < 1e-3  # it is a Gaussian blur with a sigma from the range


# -- to tensor ---------------------------------------------------------------------------------


def test_to_tensor_dtype_and_expand_dims():
    x = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    t = make("ToTensor", expand_dims=True)(x, rng())
    assert t.dtype == torch.float32 and t.shape == (1, 2, 3, 4)
    t4 = make("ToTensor", expand_dims=True)(x[None], rng())
    assert t4.shape == (1, 2, 3, 4)
    long = make("ToTensor", expand_dims=False, dtype="long")(x, rng())
    assert long.dtype == torch.int64 and long.shape == (2, 3, 4)
    flipped = make("ToTensor", expand_dims=False, dtype="int64")(x[:, ::-1], rng())
    assert torch.equal(flipped, torch.from_numpy(x[:, ::-1].astype(np.int64).copy()))
    norm = make("ToTensor", expand_dims=False, normalize=True)(x, rng())
    assert float(norm.min()) == 0 and abs(float(norm.max()) - 1) < 1e-6
    with pytest.raises(ConfigError, match="dtype"):
        make("ToTensor", expand_dims=True, dtype="floaty")
    with pytest.raises(DataError, match="shape"):
        make("ToTensor", expand_dims=True)(np.zeros((3, 3)), rng())


def test_transforms_built_directly_and_repr():
    flip = registry.get("transforms", "RandomFlip")(axis_prob=0.25)
    assert flip.axis_prob == 0.25 and "axis_prob=0.25" in repr(flip)
    assert isinstance(build_pipeline([{"name": "Identity"}]), Pipeline)


def test_to_tensor_accepts_a_flipped_singleton_axis():
    """RandomFlip on a (1,Y,X) patch gives a negative stride numpy calls contiguous."""
    import numpy as np

    from unet_core import registry

    flipped = np.arange(16, dtype=np.float32).reshape(1, 4, 4)[::-1, :, ::-1]
    out = registry.create("transforms", {"name": "ToTensor", "expand_dims": True})(flipped, None)
    assert out.shape == (1, 1, 4, 4) and out[0, 0, 0, 0].item() == 3.0


class _ProbeConfig(ComponentConfig):
    eps: float = 1e-6


class _StatsProbe:
    """A third-party transform without from_config whose constructor takes the statistics."""

    Config = _ProbeConfig

    def __init__(self, eps: float = 1e-6, stats: dict | None = None) -> None:
        self.eps, self.stats = eps, stats

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return array


class _PlainConfig(ComponentConfig):
    factor: float = 2.0


class _Plain:
    """One whose constructor takes no statistics."""

    Config = _PlainConfig

    def __init__(self, factor: float = 2.0) -> None:
        self.factor = factor

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return array * self.factor


def test_a_transform_is_built_alike_by_the_pipeline_and_registry_create():
    """Without from_config the constructor gets `stats` if it takes them, in the pipeline as
    with registry.create (docs/plugins.md's testing route), and is never given them if not."""
    registry.register("transforms", "StatsProbe", _StatsProbe)
    registry.register("transforms", "PlainScale", _Plain)
    stats = {"mean": 1.0, "std": 2.0, "pmin": None, "pmax": None}
    try:
        in_pipeline = build_pipeline([{"name": "StatsProbe"}], stats).transforms[0]
        assert in_pipeline.stats == stats
        assert registry.create("transforms", {"name": "StatsProbe"}, stats=stats).stats == stats
        plain = registry.create("transforms", {"name": "PlainScale", "factor": 3.0}, stats=stats)
        assert plain.factor == 3.0
        assert build_pipeline([{"name": "PlainScale"}], stats).transforms[0].factor == 2.0
    finally:
        registry.default_registry.unregister("transforms", "StatsProbe")
        registry.default_registry.unregister("transforms", "PlainScale")
