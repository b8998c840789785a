"""The test input of an export: a crop of a real volume the model can take, or noise.

Shapes are whole multiples of the network's pooling step, so exported graphs, parity checks and
bioimage.io test tensors all see a size the network is made for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unet_core.errors import DataError

#: Largest test crop per axis (3D: z, y, x; 2D: y, x); small so export and tests stay quick.
MAX_CROP_3D = (32, 64, 64)
MAX_CROP_2D = (256, 256)


def crop_shape(volume: Sequence[int], step: Sequence[int], dims: int) -> tuple[int, ...]:
    """The largest multiple of ``step`` per axis that fits both the volume and the cap."""
    cap = MAX_CROP_3D if dims == 3 else MAX_CROP_2D
    out = []
    for size, s, limit in zip(volume[-dims:], step, cap):
        n = (min(size, limit) // s) * s
        if n < s:
            raise DataError(
                f"The sample volume is {tuple(volume)}, smaller than the network's pooling step "
                f"{tuple(step)} on some axis; give a larger --sample volume."
            )
        out.append(n)
    return tuple(out)


def read_sample(
    path: str | Path,
    dataset: str,
    *,
    in_channels: int,
    step: Sequence[int],
    dims: int,
    key: str = "--sample",
) -> np.ndarray:
    """A centred crop of ``path[dataset]`` (any volume format) as float32 (1, C, *spatial),
    unnormalised; a 2D model takes the middle plane of a 3D volume. ``key``: where the path
    came from, for messages."""
    from unet_core.io import Source

    where = f"The sample {path} ({key})"
    with Source(str(path), raw_name=dataset, key=key) as src:
        volume = src.volume(dataset, key=key)
        spatial = volume.spatial_shape
        if dims == 3 and spatial[0] == 1:
            raise DataError(
                f"{where} holds a 2D image {volume.shape} under {dataset!r}, but the model is "
                "3D (UNet3D and kin). Give a 3D volume (Z,Y,X) or (C,Z,Y,X) with --sample."
            )
        want = crop_shape(spatial[3 - dims :], step, dims)
        start = [(n - w) // 2 for n, w in zip(spatial[3 - dims :], want)]
        index = [slice(a, a + w) for a, w in zip(start, want)]
        if dims == 2:
            index.insert(0, slice(spatial[0] // 2, spatial[0] // 2 + 1))
        data = np.asarray(volume[tuple(index)], dtype=np.float32)
    if volume.ndim == 3:
        data = data[None]
    if dims == 2:
        data = data[:, 0]
    if data.shape[0] != in_channels:
        raise DataError(
            f"{where}: {dataset!r} has {data.shape[0]} channel(s) (shape {volume.shape}); the "
            f"model takes {in_channels}. Give a sample with the training data's channels."
        )
    return data[None]


def noise_sample(in_channels: int, step: Sequence[int], dims: int, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian noise of a valid shape, for when no volume is at hand."""
    cap = MAX_CROP_3D if dims == 3 else MAX_CROP_2D
    shape = tuple(max(s, (min(c, 4 * s) // s) * s) for s, c in zip(step, cap))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, in_channels, *shape)).astype(np.float32)
