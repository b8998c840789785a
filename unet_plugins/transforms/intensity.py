"""Random intensity transforms for the raw input (non-spatial: their own generator stream).

Each first draws one uniform number to decide whether it runs (``execution_probability``), then
its parameters, all from the pipeline's generator. Results keep a float input's dtype and are
float32 for integer input.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from unet_plugins.transforms.base import Transform, execute, float_dtype
from unet_plugins.transforms.configs import (
    AdditiveGaussianNoiseConfig,
    AdditivePoissonNoiseConfig,
    GaussianBlur3DConfig,
    RandomContrastConfig,
    RandomGammaCorrectionConfig,
)


class RandomIntensity(Transform):
    """Shared draw: one uniform number decides whether :meth:`apply` runs on the patch."""

    def __call__(self, array: Any, rng: np.random.Generator) -> np.ndarray:
        arr = np.asarray(array)
        if not execute(rng, self.config.execution_probability):
            return arr
        return self.apply(arr, rng)

    def apply(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError


class RandomContrast(RandomIntensity):
    """``mean + a * (x - mean)`` with ``a ~ U(alpha)``.

    The reference always clipped the result to [-1, 1], which only makes sense after
    ``Normalize`` and destroys standardized data; here clipping happens only when asked:
    ``clip: [-1, 1]`` reproduces the reference, ``clip: input`` keeps the patch's own range.
    """

    Config = RandomContrastConfig

    def apply(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        factor = rng.uniform(*cfg.alpha)
        dtype = float_dtype(arr)
        out = (cfg.mean + factor * (arr.astype(dtype, copy=False) - cfg.mean)).astype(dtype)
        if cfg.clip == "input":
            out = np.clip(out, arr.min(), arr.max())
        elif cfg.clip is not None:
            out = np.clip(out, *cfg.clip)
        return out


class RandomGammaCorrection(RandomIntensity):
    """Min-max rescale to [0, 1], then ``x ** gamma`` with ``gamma ~ U(gamma)``."""

    Config = RandomGammaCorrectionConfig

    def apply(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        dtype = float_dtype(arr)
        low, high = float(arr.min()), float(arr.max())
        scaled = arr.astype(dtype) - low
        if high > low:
            scaled /= high - low
        gamma = rng.uniform(*cfg.gamma)
        return np.power(scaled, gamma, dtype=dtype)


class AdditiveGaussianNoise(RandomIntensity):
    """Add N(0, s) noise per voxel with ``s ~ U(scale)``."""

    Config = AdditiveGaussianNoiseConfig

    def apply(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        std = rng.uniform(*cfg.scale)
        dtype = float_dtype(arr)
        noise = rng.standard_normal(
            arr.shape, dtype=np.float32 if dtype == np.float32 else np.float64
        )
        return (arr + std * noise).astype(dtype, copy=False)


class AdditivePoissonNoise(RandomIntensity):
    """Add Poisson(l) counts per voxel with ``l ~ U(lam)``."""

    Config = AdditivePoissonNoiseConfig

    def apply(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        lam = rng.uniform(*cfg.lam)
        dtype = float_dtype(arr)
        return (arr + rng.poisson(lam, size=arr.shape)).astype(dtype, copy=False)


class GaussianBlur3D(RandomIntensity):
    """Gaussian blur with ``sigma ~ U(sigma)`` over the spatial axes of each channel.

    Draws from the pipeline's generator (the reference used Python's global ``random``, so its
    blur was neither seeded nor different per worker) and never blurs across channels. Borders
    use 'nearest' as skimage.filters.gaussian did; the intensity range is preserved.
    """

    Config = GaussianBlur3DConfig

    def apply(self, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.config
        sigma = rng.uniform(*cfg.sigma)
        sigmas = [0.0] * (arr.ndim - 3) + [sigma] * min(arr.ndim, 3)
        return ndimage.gaussian_filter(arr.astype(float_dtype(arr)), sigmas, mode="nearest")
