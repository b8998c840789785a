"""A labelled 3D "nuclei" volume generated on the spot, so the demo needs no download.

Blobs are random ellipsoids with uneven brightness, blurred like a widefield point-spread
function and corrupted with Poisson and Gaussian noise: easy enough to learn in a minute on a
CPU, hard enough that thresholding the raw image is visibly worse than the network.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def make_nuclei_volume(
    shape: tuple[int, int, int] = (48, 128, 128),
    n_nuclei: int = 60,
    radius: tuple[float, float] = (4.0, 8.0),
    seed: int = 0,
) -> tuple[NDArray[np.uint8], NDArray[np.uint16]]:
    """Return (raw uint8, instance labels uint16 with 0 = background)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint16)
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    placed = 0
    for _ in range(n_nuclei * 20):
        if placed == n_nuclei:
            break
        r = rng.uniform(*radius, size=3) * np.array([0.6, 1.0, 1.0])  # anisotropic in z
        centre = [rng.uniform(r[i], shape[i] - r[i]) for i in range(3)]
        box = tuple(
            slice(max(0, int(centre[i] - r[i]) - 1), min(shape[i], int(centre[i] + r[i]) + 2))
            for i in range(3)
        )
        dist = sum(((g[box] - c) / ri) ** 2 for g, c, ri in zip((zz, yy, xx), centre, r))
        inside = dist <= 1.0
        if labels[box][inside].any():
            continue  # keep nuclei apart so connected components can separate them
        placed += 1
        labels[box][inside] = placed
    brightness = np.concatenate([[0.0], rng.uniform(0.45, 1.0, placed)])
    signal = brightness[labels].astype(np.float32)
    signal = ndimage.gaussian_filter(signal, sigma=(1.2, 1.5, 1.5))
    photons = rng.poisson(signal * 60 + 8).astype(np.float32)
    raw = photons + rng.normal(0, 4, size=shape)
    raw = np.clip(raw / np.percentile(raw, 99.9) * 255, 0, 255).astype(np.uint8)
    return raw, labels
