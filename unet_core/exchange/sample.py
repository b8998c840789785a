"""The test input of an export: a crop of a real volume the model can take, or noise.

Shapes are whole multiples of the network's pooling step, so exported graphs, parity checks and
bioimage.io test tensors all see a size the network is made for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    path: str | Path, dataset: str, *, in_channels: int, step: Sequence[int], dims: int
) -> np.ndarray:
    """A centred crop of ``path[dataset]`` as float32 (1, C, *spatial), unnormalised."""
    import h5py

    with h5py.File(path, "r") as f:
        if dataset not in f:
            raise DataError(
                f"{str(path)!r} has no dataset {dataset!r} (it has {sorted(f)[:8]}); give a "
                "sample HDF5 file with the raw data under that name (loaders.raw_internal_path)."
            )
        ds = f[dataset]
        shape = tuple(ds.shape)
        spatial = shape[-dims:]
        want = crop_shape(spatial, step, dims)
        start = [(n - w) // 2 for n, w in zip(spatial, want)]
        index: tuple[Any, ...] = tuple(slice(a, a + w) for a, w in zip(start, want))
        lead = len(shape) - dims
        data = np.asarray(ds[(slice(None),) * lead + index], dtype=np.float32)
    if lead == 0:
        data = data[None]
    elif dims == 2 and lead == 2 and data.shape[1] == 1:  # (C, 1, Y, X) stored 2D
        data = data[:, 0]
    if data.shape[0] != in_channels:
        raise DataError(
            f"The sample {str(path)!r}[{dataset!r}] has {data.shape[0]} channel(s); the model "
            f"takes {in_channels}. Give a sample with the training data's channels."
        )
    return data[None]


def noise_sample(in_channels: int, step: Sequence[int], dims: int, seed: int = 0) -> np.ndarray:
    """Seeded Gaussian noise of a valid shape, for when no volume is at hand."""
    cap = MAX_CROP_3D if dims == 3 else MAX_CROP_2D
    shape = tuple(max(s, (min(c, 4 * s) // s) * s) for s, c in zip(step, cap))
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, in_channels, *shape)).astype(np.float32)
