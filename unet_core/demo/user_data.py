"""Cut a user's labelled volume into train / val / test blocks for ``unet demo --data``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unet_core.errors import DataError


def _read(path: str, key: str) -> np.ndarray:
    """The array ``key`` of the user's volume, through the format that claims the file."""
    from unet_core import formats

    if formats.scheme_of(path) is None and not Path(path).exists():
        raise DataError(
            f"Demo input {path!r} does not exist; expected a volume ({formats.describe()})."
        )
    reader = formats.open_volume(path, primary=key, key="unet demo --data")
    try:
        return np.asarray(reader.array(key, key=f"the demo's {key!r} dataset", in_memory=True))
    finally:
        reader.close()


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
