"""Instance labels -> targets a network can learn instances from: foreground, boundary, distance.

A one-channel foreground model merges touching nuclei and cannot tell a debris speck from a
nucleus; a second channel that rises towards each object's centre (the normalised distance
transform) or marks the borders between objects gives the seeded watershed
(:class:`unet_plugins.postprocessors.instances.SeededWatershed`) one seed per object.

The distance is a multi-label Euclidean distance transform: inside each object, the distance to
the nearest voxel that is not that object (background or a touching neighbour), computed by the
``edt`` package in one pass over all objects, then divided by the object's own maximum so that
small and large objects both peak at 1.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from unet_plugins.transforms.base import Transform, as_label_volume
from unet_plugins.transforms.configs import LabelToDistanceConfig
from unet_plugins.transforms.labels import boundary_channels, restore_ignore, stack_channels


def object_ids(label: np.ndarray) -> tuple[np.ndarray, int]:
    """``(ids, n)``: every label value > 0 becomes one of 1..n (uint32), everything else 0."""
    values, inverse = np.unique(label, return_inverse=True)
    lookup = np.zeros(values.size, dtype=np.uint32)
    objects = values > 0
    lookup[objects] = np.arange(1, int(objects.sum()) + 1, dtype=np.uint32)
    return lookup[inverse.reshape(label.shape)], int(objects.sum())


def instance_distance(
    label: np.ndarray, sampling: tuple[float, ...] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Distance of each object voxel to the nearest voxel of another label (float32, 0 outside).

    The volume's edge does not count as a border (an object cut by a patch edge is not made
    smaller by it), as in scipy's ``distance_transform_edt``.
    """
    import edt

    ids, _ = object_ids(label)
    distance = edt.edt(
        np.ascontiguousarray(ids), anisotropy=tuple(sampling), black_border=False, parallel=1
    )
    return np.asarray(distance, dtype=np.float32)


def normalised_distance(
    label: np.ndarray, sampling: tuple[float, ...] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """:func:`instance_distance` divided by each object's maximum: 1 at every object's centre."""
    from scipy import ndimage as ndi

    ids, n = object_ids(label)
    distance = instance_distance(label, sampling)
    if n == 0:
        return distance
    peaks = np.zeros(n + 1, dtype=np.float32)
    peaks[1:] = ndi.maximum(distance, labels=ids, index=np.arange(1, n + 1))
    peaks[peaks == 0] = 1.0  # background (and any zero-distance object) stays 0
    return (distance / peaks[ids]).astype(np.float32)


class LabelToDistance(Transform):
    """[foreground] + [boundary] + [normalised distance] (each optional) + [label], float32."""

    Config = LabelToDistanceConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        label = as_label_volume(array, "LabelToDistance")
        cfg = self.config
        # StandardLabelToBoundary's channels: [foreground] + [boundary]
        options = SimpleNamespace(
            foreground=cfg.foreground, mode=cfg.boundary_mode, ignore_index=cfg.ignore_index
        )
        channels = boundary_channels(label, options) if cfg.boundary else []
        if cfg.foreground and not cfg.boundary:
            channels.append(restore_ignore((label > 0).astype(np.float32), label, cfg.ignore_index))
        if cfg.distance:
            distance = normalised_distance(label, tuple(cfg.sampling))
            channels.append(restore_ignore(distance, label, cfg.ignore_index))
        if cfg.append_label:
            channels.append(label)
        return stack_channels([c.astype(np.float32, copy=False) for c in channels])
