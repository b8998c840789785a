"""The cover image of a package: the input's mid-slice beside the prediction's, 2:1."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _mid_slice(volume: np.ndarray) -> np.ndarray:
    """First channel, middle z (3D) of (1, C, *spatial), cropped square, scaled to uint8."""
    image = volume[0, 0]
    if image.ndim == 3:
        image = image[image.shape[0] // 2]
    side = min(image.shape)
    image = image[:side, :side].astype(np.float64)
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return np.asarray(np.round(scaled * 255), dtype=np.uint8)


def write_cover(raw: np.ndarray, prediction: np.ndarray, path: Path) -> None:
    """Input | prediction, side by side (bioimage.io prefers a 2:1 cover)."""
    import imageio.v3 as iio

    left, right = _mid_slice(raw), _mid_slice(prediction)
    side = min(left.shape[0], right.shape[0])
    iio.imwrite(path, np.concatenate([left[:side, :side], right[:side, :side]], axis=1))
