"""Label -> target conversions: boundaries, masks, affinities, relabelling.

They take a (Z,Y,X) label volume (a single-channel (1,Z,Y,X) one is squeezed) and return
channels-first (C,Z,Y,X) targets. ``ignore_index`` voxels of the label are written back into every
derived channel. Boundary/affinity channels are int32 (so -1 style ignore values fit); appending
the label promotes the stack to a type that holds both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage import measure
from skimage.segmentation import find_boundaries

from unet_core.errors import DataError
from unet_plugins.transforms.base import Transform, as_label_volume
from unet_plugins.transforms.configs import (
    BlobsToMaskConfig,
    LabelToAffinitiesConfig,
    LabelToBoundaryAndAffinitiesConfig,
    LabelToMaskAndAffinitiesConfig,
    LabelToZAffinitiesConfig,
    RandomLabelToAffinitiesConfig,
    RelabelConfig,
    StandardLabelToBoundaryConfig,
    _OffsetsConfig,
)

#: Affinity axes in the reference's channel order for each offset: X, Y, Z.
AXIS_ORDER = (2, 1, 0)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Half-sample-symmetric ('reflect') wrap of indices into 0..n-1."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def affinity(label: np.ndarray, axis: int, offset: int) -> np.ndarray:
    """1 where the label differs between voxel ``i + c`` and ``i + c - offset`` along ``axis``.

    ``c = (offset + 1) // 2`` and reflecting borders reproduce the positions of the reference's
    convolution with a (+1 at 0, -1 at offset) kernel; comparing instead of subtracting avoids
    integer wrap-around.
    """
    n = label.shape[axis]
    i = np.arange(n)
    c = (offset + 1) // 2
    ahead = np.take(label, _reflect(i + c, n), axis=axis)
    behind = np.take(label, _reflect(i + c - offset, n), axis=axis)
    return (ahead != behind).astype(np.int32)


def restore_ignore(channel: np.ndarray, label: np.ndarray, ignore_index: int | None) -> np.ndarray:
    """Write ``ignore_index`` back where the label has it."""
    if ignore_index is not None:
        channel[label == ignore_index] = ignore_index
    return channel


def stack_channels(channels: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(c) for c in channels], axis=0)


class StandardLabelToBoundary(Transform):
    """[foreground (label > 0)] + [boundaries between labels] + [label], channels first."""

    Config = StandardLabelToBoundaryConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        label = as_label_volume(array, "StandardLabelToBoundary")
        return stack_channels(boundary_channels(label, self.config) + self._label(label))

    def _label(self, label: np.ndarray) -> list[np.ndarray]:
        return [label] if self.config.append_label else []


def boundary_channels(label: np.ndarray, cfg: Any) -> list[np.ndarray]:
    """StandardLabelToBoundary's channels without the appended label."""
    out = []
    if cfg.foreground:
        out.append(restore_ignore((label > 0).astype(np.int32), label, cfg.ignore_index))
    edges = find_boundaries(label, connectivity=2, mode=cfg.mode).astype(np.int32)
    out.append(restore_ignore(edges, label, cfg.ignore_index))
    return out


class BlobsToMask(Transform):
    """[label > 0] + [outer boundary] (or one channel with boundary = class 2) + [label]."""

    Config = BlobsToMaskConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        label = as_label_volume(array, "BlobsToMask")
        cfg = self.config
        mask = (label > 0).astype(np.uint8)
        channels = [mask]
        if cfg.boundary:
            outer = find_boundaries(label, connectivity=2, mode="outer")
            if cfg.cross_entropy:
                mask[outer] = 2
            else:
                channels.append(outer.astype(np.uint8))
        if cfg.append_label:
            channels.append(label)
        return stack_channels(channels)


class _Affinities(Transform):
    """Shared affinity machinery: a list of (axis, offset) pairs -> channels."""

    aggregate: bool = False

    def pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        raise NotImplementedError

    @property
    def kernels(self) -> list[tuple[int, int]]:
        """The (axis, offset) pairs, one per channel before aggregation (reference: kernels)."""
        return self.pairs(np.random.default_rng(0))

    def affinity_channels(self, label: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        ignore = self.config.ignore_index
        channels = [affinity(label, axis, off) for axis, off in self.pairs(rng)]
        if self.aggregate:
            channels = [
                np.logical_or.reduce(channels[i : i + 3]).astype(np.int32)
                for i in range(0, len(channels), 3)
            ]
        return [restore_ignore(c, label, ignore) for c in channels]

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        label = as_label_volume(array, type(self).__name__)
        channels = self.affinity_channels(label, rng)
        if self.config.append_label:
            channels.append(label)
        return stack_channels(channels)


class LabelToAffinities(_Affinities):
    """Per offset, channels X, Y, Z (Z uses ``z_offsets``): 1 where the label changes."""

    Config = LabelToAffinitiesConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        self.aggregate = config.aggregate_affinities
        z_offsets = config.z_offsets or config.offsets
        self._pairs = [
            (axis, z if axis == 0 else xy)
            for xy, z in zip(config.offsets, z_offsets)
            for axis in AXIS_ORDER
        ]

    def pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        return list(self._pairs)


class LabelToZAffinities(_Affinities):
    """One Z-affinity channel per offset."""

    Config = LabelToZAffinitiesConfig

    def pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        return [(0, off) for off in self.config.offsets]


class RandomLabelToAffinities(_Affinities):
    """One affinity channel with a random axis and offset 1..max_offset per sample.

    Z offsets are divided by ``z_offset_scale`` (at least 1) for anisotropic data.
    """

    Config = RandomLabelToAffinitiesConfig

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(range(1, self.config.max_offset + 1))

    def pairs(self, rng: np.random.Generator) -> list[tuple[int, int]]:
        offset = int(rng.integers(1, self.config.max_offset, endpoint=True))
        axis = AXIS_ORDER[int(rng.integers(3))]
        if axis == 0:
            offset = max(1, offset // self.config.z_offset_scale)
        return [(axis, offset)]


def _affinities_for(cfg: _OffsetsConfig) -> LabelToAffinities:
    return LabelToAffinities(
        offsets=cfg.xy_offsets,
        z_offsets=cfg.z_offsets,
        append_label=cfg.append_label,
        ignore_index=cfg.ignore_index,
    )


class LabelToBoundaryAndAffinities(Transform):
    """StandardLabelToBoundary channels followed by LabelToAffinities channels (+ label)."""

    Config = LabelToBoundaryAndAffinitiesConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        self.affinities = _affinities_for(config)

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        label = as_label_volume(array, "LabelToBoundaryAndAffinities")
        return np.concatenate(
            [stack_channels(boundary_channels(label, self.config)), self.affinities(label, rng)]
        )


class LabelToMaskAndAffinities(Transform):
    """[label > background] followed by LabelToAffinities channels (+ label)."""

    Config = LabelToMaskAndAffinitiesConfig

    def setup(self, config: Any, stats: dict[str, Any]) -> None:
        self.affinities = _affinities_for(config)

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        label = as_label_volume(array, "LabelToMaskAndAffinities")
        mask = (label > self.config.background).astype(np.uint8)[None]
        return np.concatenate([mask, self.affinities(label, rng)])


class Relabel(Transform):
    """Consecutive ids 0..n (optionally after connected components), e.g. [10,0,5] -> [2,0,1].

    With ``run_cc`` each connected component gets its own id (``ignore_label`` voxels become 0);
    ``append_original`` stacks the input behind the result.
    """

    Config = RelabelConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        original = np.asarray(array)
        labels = original
        if self.config.run_cc:
            labels = measure.label(original, background=self.config.ignore_label)
        _, consecutive = np.unique(labels, return_inverse=True)
        result = consecutive.reshape(labels.shape)
        return np.stack([result, original]) if self.config.append_original else result


class RgbToLabel(Transform):
    """RGB-coded labels -> ids ``R*65536 + G*256 + B`` (int64).

    Accepts channels-last (..., 3) images as the reference did, and channels-first (3,Z,Y,X)
    arrays (what the DSB dataset makes of an RGB mask).
    """

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = np.asarray(array)
        if arr.ndim == 4 and arr.shape[0] == 3:
            r, g, b = (c.astype(np.int64) for c in arr)
        elif arr.ndim in (2, 3) and arr.shape[-1] == 3:
            r, g, b = (arr[..., i].astype(np.int64) for i in range(3))
        else:
            raise DataError(
                f"RgbToLabel needs an RGB label image, (Y,X,3) or (3,Z,Y,X), got shape "
                f"{arr.shape}. Remove RgbToLabel for labels that are already integer ids."
            )
        result: np.ndarray = r * 65536 + g * 256 + b
        return result
