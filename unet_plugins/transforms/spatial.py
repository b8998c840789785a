"""Random geometric transforms (``spatial = True``): flips, rotations, elastic warps, crops.

Each draws its parameters once per call from the pipeline's spatial generator and applies them to
every channel, so raw, label and weight of one sample (3D or 4D, any dtype) move together. 2D data
(singleton Z) is handled explicitly: rotations happen in the (Y,X) plane and elastic fields have
no Z component.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

from unet_plugins.transforms.base import (
    Transform,
    check_ndim,
    execute,
    per_channel,
    spatial_shape,
)
from unet_plugins.transforms.configs import (
    CropToFixedConfig,
    ElasticDeformationConfig,
    RandomFlipConfig,
    RandomRotateConfig,
)


class RandomFlip(Transform):
    """Flip each of the Z, Y, X axes independently with probability ``axis_prob``."""

    spatial = True
    sync_keys = ("axis_prob",)

    Config = RandomFlipConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = check_ndim(array, "RandomFlip")
        flips = rng.random(3) < self.config.axis_prob
        axes = tuple(int(a) + arr.ndim - 3 for a in np.flatnonzero(flips))
        return np.flip(arr, axes) if axes else arr


class RandomRotate90(Transform):
    """Rotate by k*90 degrees (k uniform in 0..3) in the (Y,X) plane."""

    spatial = True

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = check_ndim(array, "RandomRotate90")
        k = int(rng.integers(0, 4))
        return np.rot90(arr, k, axes=(arr.ndim - 2, arr.ndim - 1))


class RandomRotate(Transform):
    """Rotate by an integer angle in [-angle_spectrum, angle_spectrum] in a random axis plane.

    ``order`` defaults to 0 (nearest) as in the reference, because the same key serves label
    lists; set ``order: 1`` or ``3`` in raw lists for smooth intensities. Singleton-Z (2D) data
    always rotates in the (Y,X) plane.
    """

    spatial = True
    sync_keys = ("angle_spectrum", "axes")

    Config = RandomRotateConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = check_ndim(array, "RandomRotate")
        cfg = self.config
        plane = cfg.axes[int(rng.integers(len(cfg.axes)))]
        angle = int(rng.integers(-cfg.angle_spectrum, cfg.angle_spectrum, endpoint=True))
        if spatial_shape(arr)[0] == 1:
            plane = (2, 1)  # a 2D image has no Z extent to rotate into
        if angle == 0:
            return arr

        def rotate(volume: np.ndarray) -> np.ndarray:
            return ndimage.rotate(
                volume,
                angle,
                axes=plane,
                reshape=False,
                order=cfg.order,
                mode=cfg.mode,
                cval=cfg.cval,
            )

        return per_channel(arr, rotate)


class ElasticDeformation(Transform):
    """Warp by smooth random displacement fields (Gaussian-filtered noise times ``alpha``).

    The fields are drawn once per sample and applied to every channel. The smoothing is done in
    the DCT domain, which equals ``scipy.ndimage.gaussian_filter(mode='reflect')`` to rounding
    error but costs O(N log N) instead of O(N * sigma). ``apply_3d: false`` (and any singleton-Z
    input) leaves Z undisplaced.
    """

    spatial = True
    sync_keys = ("alpha", "sigma", "execution_probability", "apply_3d")

    Config = ElasticDeformationConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = check_ndim(array, "ElasticDeformation")
        cfg = self.config
        if not execute(rng, cfg.execution_probability):
            return arr
        shape = spatial_shape(arr)
        use_z = cfg.apply_3d and shape[0] > 1
        fields = [
            smooth_reflect(rng.standard_normal(shape), cfg.sigma) * cfg.alpha if move else None
            for move in (use_z, True, True)
        ]
        grid = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
        coords = np.stack([g if f is None else g + f for g, f in zip(grid, fields)])

        def warp(volume: np.ndarray) -> np.ndarray:
            return ndimage.map_coordinates(volume, coords, order=cfg.spline_order, mode="reflect")

        return per_channel(arr, warp)


def smooth_reflect(noise: np.ndarray, sigma: float, truncate: float = 4.0) -> np.ndarray:
    """Gaussian filter with half-sample-symmetric ('reflect') boundaries, via the DCT-II.

    A reflected signal is periodic with period 2N, on which a symmetric kernel is diagonal in the
    DCT-II basis with gain ``sum_j w_j cos(pi k j / N)``; ``w`` is scipy's truncated, normalised
    kernel, so the result matches ``ndimage.gaussian_filter(noise, sigma, mode='reflect')``.
    """
    radius = int(truncate * float(sigma) + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    spectrum = sp_fft.dctn(noise, type=2, norm="ortho")
    for axis, n in enumerate(noise.shape):
        if n == 1:
            continue  # a reflected single sample is constant: the filter leaves it unchanged
        k = np.arange(n, dtype=np.float64)
        gain = np.cos(np.pi * np.outer(k, offsets) / n) @ weights
        view = [1] * noise.ndim
        view[axis] = n
        spectrum *= gain.reshape(view)
    smoothed: np.ndarray = sp_fft.idctn(spectrum, type=2, norm="ortho")
    return smoothed


class CropToFixed(Transform):
    """Crop (Y,X) to ``size`` at a random (or centred) position; reflect-pad dims that are short.

    Every start position 0..dim-size is possible (the reference never picked the last one).
    """

    spatial = True
    sync_keys = ("size", "centered")

    Config = CropToFixedConfig

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = check_ndim(array, "CropToFixed")
        _, y, x = spatial_shape(arr)
        starts, pads = [], []
        for dim, want in zip((y, x), self.config.size):
            if want < dim:
                room = dim - want
                start = room // 2 if self.config.centered else int(rng.integers(0, room + 1))
                starts.append(start)
                pads.append((0, 0))
            else:
                starts.append(0)
                pads.append(((want - dim) // 2, want - dim - (want - dim) // 2))
        (ys, xs), (wy, wx) = starts, self.config.size
        out = arr[..., ys : ys + wy, xs : xs + wx]
        if any(p != (0, 0) for p in pads):
            lead = [(0, 0)] * (out.ndim - 2)
            out = np.pad(out, lead + pads, mode="reflect" if min(y, x) > 1 else "edge")
        return out
