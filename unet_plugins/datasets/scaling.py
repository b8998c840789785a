"""``random_scale``: jitter a training patch's extent, then resize it back to the patch shape.

What the reference's RandomScaler meant, done as intended (REFERENCE.md §12.19): the patch is
scaled with probability ``random_scale_probability`` (the reference inverted it), only in the
train phase (it also perturbed validation), and an axis whose patch or volume extent is 1 (the
singleton z of 2D data) is never changed (the reference could empty it). Offsets are drawn like
the reference's: three values in ``[0, random_scale)``, all negated with probability 1/2, added
either to every start or to every stop, clamped to the volume and to at least one voxel. The
window is resized to the patch shape *before* the transforms (raw linear, label and weight
nearest), so label-derived targets (boundaries, affinities) are computed at the final scale.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Generator stream of the jitter, apart from the pipelines' streams 0 (spatial) and 1 (other).
STREAM = 2


class RandomScale:
    def __init__(self, scale: int, probability: float, patch_shape: Sequence[int]) -> None:
        self.scale = int(scale)
        self.probability = float(probability)
        self.patch_shape = tuple(int(p) for p in patch_shape)

    def jitter(
        self, spatial: Sequence[slice], volume_shape: Sequence[int], seed: int
    ) -> tuple[slice, ...] | None:
        """New spatial slices, or None when this sample is not scaled."""
        rng = np.random.default_rng([int(seed), STREAM])
        if rng.random() >= self.probability:
            return None
        offsets = rng.integers(0, self.scale, size=3)
        if rng.random() < 0.5:
            offsets = -offsets
        at_start = rng.random() < 0.5
        out = []
        for s, offset, size, patch in zip(spatial, offsets, volume_shape, self.patch_shape):
            start, stop = int(s.start), int(s.stop)
            if patch > 1 and size > 1:
                if at_start:
                    start = min(max(0, start + int(offset)), stop - 1)
                else:
                    stop = max(min(size, stop + int(offset)), start + 1)
            out.append(slice(start, stop))
        return tuple(out)

    def resize(self, patch: np.ndarray, *, linear: bool) -> np.ndarray:
        """(…,Z,Y,X) -> (…, *patch_shape): trilinear for raw, nearest (dtype kept) otherwise."""
        if tuple(patch.shape[-3:]) == self.patch_shape:
            return patch
        if not linear:
            for axis, out in enumerate(self.patch_shape, start=patch.ndim - 3):
                n = patch.shape[axis]
                # torch's 'nearest': source index floor(i * in / out)
                pick = np.minimum((np.arange(out) * n) // out, n - 1)
                patch = np.take(patch, pick, axis=axis)
            return patch
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(patch, dtype=np.float32))
        lead = t.shape[:-3]
        t = t.reshape(1, -1, *t.shape[-3:])
        t = F.interpolate(t, size=self.patch_shape, mode="trilinear", align_corners=False)
        return t.reshape(*lead, *self.patch_shape).numpy()
