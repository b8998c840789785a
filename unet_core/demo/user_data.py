"""Cut a user's labelled volume into train / val / test blocks for ``unet demo --data``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_core.errors import DataError


def _read(path: str, key: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"Demo input {path!r} does not exist; expected an HDF5 or TIFF volume.")
    if p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(p))
    import h5py

    with h5py.File(p, "r") as f:
        if key not in f:
            raise DataError(
                f"{path!r} has no dataset {key!r}; it has: {', '.join(f.keys()) or 'nothing'}. "
                "The demo expects `raw` and `label` datasets (or --labels for TIFF)."
            )
        return np.asarray(f[key][...])


def split_user_volume(data: str, labels: str | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """60 / 20 / 20 % along the longest axis, so each part is a real, unseen block."""
    raw = _read(data, "raw")
    label = _read(labels, "label") if labels else _read(data, "label")
    if raw.ndim == 2:
        raw, label = raw[None], label[None]
    if raw.shape != label.shape or raw.ndim != 3:
        raise DataError(
            f"The demo needs a 3D (Z,Y,X) raw volume and labels of the same shape; got raw "
            f"{raw.shape} and labels {label.shape} from {data!r}."
        )
    axis = int(np.argmax(raw.shape))
    n = raw.shape[axis]
    if n < 40:
        raise DataError(f"{data!r} is too small for a train/val/test split: {raw.shape}.")
    cuts = [0, int(n * 0.6), int(n * 0.8), n]
    out = {}
    for phase, lo, hi in zip(("train", "val", "test"), cuts[:-1], cuts[1:]):
        index = [slice(None)] * 3
        index[axis] = slice(lo, hi)
        out[phase] = (raw[tuple(index)], label[tuple(index)].astype(np.uint16))
    return out
