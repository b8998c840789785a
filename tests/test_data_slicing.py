"""Slice builders: the reference's patch positions and counts, filtering, halo, errors.

Expected kept patches were computed with the reference (pytorch-3dunet 1.9.6,
``FilterSliceBuilder`` with ``RandomState(47)``) on the same files and are written out here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile

from unet_core import registry
from unet_core.errors import ConfigError, DataError
from unet_core.io import Source
from unet_plugins.slice_builders.grid import grid_starts


def starts(slices: list[tuple[slice, ...]]) -> list[tuple[int, ...]]:
    return [tuple(s.start for s in idx[-3:]) for idx in slices]


def build(name: str, raw: Any, label: Any = None, weight: Any = None, **params: Any) -> Any:
    return registry.create(
        "slice_builders", {"name": name, **params}, raw=raw, label=label, weight=weight
    )


@pytest.fixture(scope="module")
def volumes(sample_data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name in ("nuclei3d_train_a.h5", "nuclei3d_train_b.h5", "ovule_boundary.h5"):
        with h5py.File(sample_data / name, "r") as f:
            out[name] = (f["raw"][:], f["label"][:])
    return out


def test_grid_starts_by_hand() -> None:
    assert grid_starts(100, 64, 32) == [0, 32, 36]  # 0, 32 fit; 64+64 > 100; flush at 36
    assert grid_starts(128, 64, 32) == [0, 32, 64]  # ends exactly: no extra patch
    assert grid_starts(128, 127, 1) == [0, 1]
    assert grid_starts(128, 69, 17) == [0, 17, 34, 51, 59]
    assert grid_starts(5, 5, 3) == [0]
    assert grid_starts(1, 1, 1) == [0]


@pytest.mark.parametrize(
    ("patch", "stride", "count", "first", "last"),
    [
        ((64, 64, 64), (32, 32, 32), 27, (0, 0, 0), (36, 36, 36)),
        ((32, 64, 64), (16, 32, 32), 6 * 9, (0, 0, 0), (68, 36, 36)),
        ((100, 100, 100), (1, 1, 1), 1, (0, 0, 0), (0, 0, 0)),
        ((50, 64, 70), (25, 18, 30), 3 * 3 * 2, (0, 0, 0), (50, 36, 30)),
        ((50, 64, 70), (20, 30, 25), 4 * 3 * 3, (0, 0, 0), (50, 36, 30)),
    ],
)
def test_grid_positions_on_real_volume(volumes, patch, stride, count, first, last) -> None:
    raw, label = volumes["nuclei3d_train_a.h5"]
    sb = build("SliceBuilder", raw, label, patch_shape=patch, stride_shape=stride)
    assert len(sb.raw_slices) == count
    assert starts(sb.raw_slices)[0] == first and starts(sb.raw_slices)[-1] == last
    assert sb.label_slices is sb.raw_slices  # same ndim: same slices
    for idx in sb.raw_slices:
        assert raw[idx].shape == patch
    covered = np.zeros(raw.shape, bool)
    for idx in sb.raw_slices:
        covered[idx] = True
    assert covered.all()


# (file, patch, stride, threshold, slack, ignore_index) -> (grid count, kept count, detail)
# detail: the dropped starts (or the kept ones when few are kept), from the reference
REFERENCE_FILTER_CASES = [
    (
        "nuclei3d_train_a.h5",
        (64, 64, 64),
        (32, 32, 32),
        0.6,
        0.01,
        None,
        27,
        1,
        {"kept": [(36, 32, 36)]},
    ),
    ("nuclei3d_train_a.h5", (64, 64, 64), (32, 32, 32), 0.1, 0.01, None, 27, 27, {"dropped": []}),
    (
        "nuclei3d_train_a.h5",
        (32, 64, 64),
        (16, 32, 32),
        0.15,
        0.1,
        None,
        54,
        52,
        {"dropped": [(64, 0, 0), (68, 0, 0)]},
    ),
    (
        "nuclei3d_train_b.h5",
        (32, 64, 64),
        (16, 16, 16),
        0.1,
        0.05,
        None,
        96,
        87,
        {
            "dropped": [
                (16, 0, 0),
                (16, 32, 16),
                (16, 36, 16),
                (32, 0, 0),
                (32, 16, 0),
                (32, 32, 16),
                (32, 32, 32),
                (32, 32, 36),
                (48, 0, 0),
            ]
        },
    ),
    (
        "nuclei3d_train_b.h5",
        (64, 64, 64),
        (18, 18, 18),
        0.12,
        0.0,
        None,
        27,
        21,
        {"dropped": [(0, 0, 0), (0, 0, 18), (0, 18, 0), (18, 0, 0), (18, 18, 0), (36, 0, 0)]},
    ),
    ("ovule_boundary.h5", (16, 64, 64), (8, 48, 48), 0.99, 0.2, None, 27, 27, {"dropped": []}),
    (
        "ovule_boundary.h5",
        (16, 64, 64),
        (8, 48, 48),
        0.95,
        0.3,
        918,
        27,
        19,
        {
            "dropped": [
                (0, 48, 48),
                (0, 64, 0),
                (0, 64, 48),
                (8, 48, 0),
                (8, 48, 48),
                (8, 64, 0),
                (8, 64, 48),
                (16, 48, 0),
            ]
        },
    ),
]


@pytest.mark.parametrize("case", REFERENCE_FILTER_CASES, ids=lambda c: f"{c[0]}-{c[3]}-{c[5]}")
def test_filter_matches_reference(volumes, case) -> None:
    name, patch, stride, threshold, slack, ignore, total, kept, detail = case
    raw, label = volumes[name]
    fb = build(
        "FilterSliceBuilder",
        raw,
        label,
        patch_shape=patch,
        stride_shape=stride,
        threshold=threshold,
        slack_acceptance=slack,
        ignore_index=ignore,
    )
    grid = starts(
        build("SliceBuilder", raw, label, patch_shape=patch, stride_shape=stride).raw_slices
    )
    assert fb.total_patches == total and len(fb.raw_slices) == kept
    got = starts(fb.raw_slices)
    if "kept" in detail:
        assert got == detail["kept"]
    else:
        assert got == [s for s in grid if s not in detail["dropped"]]
    assert fb.kept_fraction == pytest.approx(kept / total)
    # the recorded fractions are the labelled fraction of each grid patch, ignore_index as 0
    for start, fraction in zip(grid, fb.fractions):
        idx = tuple(slice(s, s + p) for s, p in zip(start, patch))
        block = label[idx]
        labelled = (block != 0) & (block != (ignore if ignore is not None else 0))
        assert fraction == pytest.approx(labelled.mean())


def test_filter_on_2d_tiff_matches_reference(sample_data: Path) -> None:
    with Source(str(sample_data / "nuclei2d_raw.tif"), raw_name="raw") as src:
        raw = src.volume("raw", key="raw_internal_path")
        label = src.volume("labels", key="label_internal_path")
        fb = build(
            "FilterSliceBuilder",
            raw,
            label,
            patch_shape=(1, 128, 128),
            stride_shape=(1, 96, 96),
            threshold=0.2,
            slack_acceptance=0.05,
        )
    assert fb.total_patches == 25
    assert starts(fb.raw_slices) == [
        (0, 0, 0),
        (0, 96, 0),
        (0, 192, 0),
        (0, 192, 192),
        (0, 192, 288),
        (0, 192, 384),
        (0, 288, 0),
        (0, 288, 96),
        (0, 288, 288),
        (0, 384, 0),
        (0, 384, 96),
        (0, 384, 192),
        (0, 384, 288),
    ]


class ReadRecorder:
    """An h5py dataset stand-in that records what was read (to prove reads are per patch)."""

    def __init__(self, data: h5py.Dataset) -> None:
        self.data, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    def __getitem__(self, index: Any) -> np.ndarray:
        block = self.data[index]
        self.reads.append(block.size)
        return block


def test_filter_reads_the_label_patch_by_patch(sample_data: Path, volumes) -> None:
    with h5py.File(sample_data / "nuclei3d_train_b.h5", "r") as f:
        label = ReadRecorder(f["label"])
        fb = build(
            "FilterSliceBuilder",
            f["raw"],
            label,
            patch_shape=(32, 64, 64),
            stride_shape=(16, 16, 16),
            threshold=0.1,
            slack_acceptance=0.05,
        )
    assert len(fb.raw_slices) == 87  # same as from the in-memory label
    assert len(label.reads) == 96 and max(label.reads) == 32 * 64 * 64


def test_channel_slices_and_separate_label_slices() -> None:
    raw = np.zeros((2, 40, 70, 80), np.float32)
    label = np.ones((40, 70, 80), np.uint8)
    weight = np.ones((1, 40, 70, 80), np.float32)
    sb = build(
        "SliceBuilder", raw, label, weight, patch_shape=(20, 64, 64), stride_shape=(20, 64, 64)
    )
    assert len(sb.raw_slices) == 2 * 2 * 2
    assert sb.raw_slices[0] == (slice(0, 2), slice(0, 20), slice(0, 64), slice(0, 64))
    assert sb.label_slices[0] == (slice(0, 20), slice(0, 64), slice(0, 64))
    assert sb.weight_slices[-1] == (slice(0, 1), slice(20, 40), slice(6, 70), slice(16, 80))
    fb = build(
        "FilterSliceBuilder",
        raw,
        label,
        weight,
        patch_shape=(20, 64, 64),
        stride_shape=(20, 64, 64),
        threshold=0.5,
    )
    assert len(fb.raw_slices) == len(fb.label_slices) == len(fb.weight_slices) == 8


def test_halo_and_defaults() -> None:
    sb = build(
        "SliceBuilder", np.zeros((8, 64, 64)), patch_shape=(8, 64, 64), stride_shape=(8, 64, 64)
    )
    assert sb.halo_shape == (0, 0, 0) and sb.label_slices is None
    sb = build(
        "SliceBuilder",
        np.zeros((8, 64, 64)),
        patch_shape=(8, 64, 64),
        stride_shape=(8, 64, 64),
        halo_shape=(2, 4, 4),
    )
    assert sb.halo_shape == (2, 4, 4)
    # no label (test phase): the filter keeps everything
    fb = build(
        "FilterSliceBuilder",
        np.zeros((8, 64, 64)),
        patch_shape=(8, 64, 64),
        stride_shape=(4, 64, 64),
    )
    assert len(fb.raw_slices) == 1 and fb.fractions is None


def test_volume_smaller_than_patch() -> None:
    with pytest.raises(DataError) as err:
        build(
            "SliceBuilder",
            np.zeros((10, 64, 100)),
            patch_shape=(16, 64, 64),
            stride_shape=(8, 8, 8),
        )
    msg = str(err.value)
    assert "(10, 64, 100)" in msg and "(16, 64, 64)" in msg and "along Z (10 < 16)" in msg


def test_no_patch_kept_is_a_clear_error(volumes) -> None:
    raw, label = volumes["nuclei3d_train_a.h5"]
    with pytest.raises(DataError) as err:
        build(
            "FilterSliceBuilder",
            raw,
            label,
            patch_shape=(64, 64, 64),
            stride_shape=(32, 32, 32),
            threshold=0.9,
            slack_acceptance=0.0,
        )
    msg = str(err.value)
    assert "kept none of the 27 patches" in msg and "threshold 0.9" in msg
    best = max(
        (label[idx] != 0).mean()
        for idx in build(
            "SliceBuilder", raw, patch_shape=(64, 64, 64), stride_shape=(32, 32, 32)
        ).raw_slices
    )
    assert f"{best:.3f}" in msg


def test_raw_label_shape_mismatch() -> None:
    with pytest.raises(DataError, match=r"raw volume is \(8, 64, 64\).*label is \(8, 64, 65\)"):
        build(
            "SliceBuilder",
            np.zeros((8, 64, 64)),
            np.zeros((8, 64, 65)),
            patch_shape=(8, 64, 64),
            stride_shape=(8, 64, 64),
        )


def test_config_checks() -> None:
    with pytest.raises(ConfigError, match="below 64.*skip_shape_check"):
        build(
            "SliceBuilder", np.zeros((1, 32, 32)), patch_shape=(1, 32, 32), stride_shape=(1, 32, 32)
        )
    sb = build(
        "SliceBuilder",
        np.zeros((1, 32, 32)),
        patch_shape=(1, 32, 32),
        stride_shape=(1, 16, 16),
        skip_shape_check=True,
    )
    assert len(sb.raw_slices) == 1
    with pytest.raises(ConfigError, match="stride_shape"):
        build(
            "SliceBuilder", np.zeros((1, 64, 64)), patch_shape=(1, 64, 64), stride_shape=(0, 64, 64)
        )
    with pytest.raises(ConfigError, match="threshold"):
        build(
            "FilterSliceBuilder",
            np.zeros((1, 64, 64)),
            patch_shape=(1, 64, 64),
            stride_shape=(1, 64, 64),
            threshold=1.5,
        )
    with pytest.raises(ConfigError, match="patch_shape"):
        build("SliceBuilder", np.zeros((1, 64, 64)), patch_shape=(64, 64), stride_shape=(1, 64, 64))
    with pytest.raises(ConfigError, match="thresold"):
        build(
            "FilterSliceBuilder",
            np.zeros((1, 64, 64)),
            patch_shape=(1, 64, 64),
            stride_shape=(1, 64, 64),
            thresold=0.5,
        )


def test_filter_seed_is_reproducible_and_configurable(volumes) -> None:
    raw, label = volumes["nuclei3d_train_b.h5"]
    params = dict(
        patch_shape=(32, 64, 64), stride_shape=(16, 16, 16), threshold=0.5, slack_acceptance=0.3
    )
    a = build("FilterSliceBuilder", raw, label, **params)
    b = build("FilterSliceBuilder", raw, label, **params)
    c = build("FilterSliceBuilder", raw, label, seed=1, **params)
    assert starts(a.raw_slices) == starts(b.raw_slices)
    assert starts(a.raw_slices) != starts(c.raw_slices)


def test_tiff_2d_plain_image_grid(sample_data: Path) -> None:
    image = tifffile.imread(sample_data / "nuclei2d_raw.tif")
    sb = build("SliceBuilder", image[None], patch_shape=(1, 256, 256), stride_shape=(1, 200, 200))
    assert starts(sb.raw_slices) == [
        (0, 0, 0),
        (0, 0, 200),
        (0, 0, 256),
        (0, 200, 0),
        (0, 200, 200),
        (0, 200, 256),
        (0, 256, 0),
        (0, 256, 200),
        (0, 256, 256),
    ]
