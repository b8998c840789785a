"""Sliding-window inference on any array: :func:`predict_array` and the pieces it shares with
the predictor plugins (forwarding batches, cropping halos, blending into memory or blocks).

The input is anything with ``shape``, ``dtype`` and numpy slicing (numpy, h5py, zarr, dask,
``np.memmap``): only the patches are read. The output is a new numpy array or any array-like
``out`` that takes blocks (``out[c, z0:z1, y0:y1, x0:x1] = values``), written block by block so
that it may be bigger than memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from unet_core.errors import ConfigError, DataError
from unet_core.tiling import (
    FAST_BATCH,
    FAST_OVERLAP,
    Index,
    fast_max_tile,
    fit_tiles,
    patch_grid,
    stride_for_overlap,
)

if TYPE_CHECKING:
    import torch

Mode = Literal["reference", "fast"]
Patches = Iterable[tuple[np.ndarray, Index]]
#: Memory for unfinished output blocks when writing into ``out`` (beyond it: a scratch file).
OUT_BLOCK_MEMORY = 1024 * 2**20


@dataclass(frozen=True)
class Window:
    """The sliding window's geometry and options, once ``mode`` and the volume are known."""

    patch: tuple[int, int, int]
    stride: tuple[int, int, int]
    halo: tuple[int, int, int]
    blending: str
    batch_size: int


def plan_window(
    volume: Sequence[int],
    device_type: str,
    *,
    mode: Mode = "reference",
    patch: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    overlap: float | None = None,
    halo: Sequence[int] | None = None,
    blending: str | None = None,
    batch_size: int | None = None,
    max_tile: Sequence[int] | None = None,
) -> Window:
    """Fill what is not given: the reference's choices, or ``fast``'s (tiles of at most
    ``max_tile`` (default: the device's) fitted to the volume, 25 % overlap, gaussian
    blending, no halo, batched)."""
    if mode not in ("reference", "fast"):
        raise ConfigError(f"mode: {mode!r} is not one of reference, fast.")
    shape = tuple(int(v) for v in volume[-3:])
    fast = mode == "fast"
    share = overlap if overlap is not None else (FAST_OVERLAP if fast else 0.0)
    if patch is None:
        if not fast:
            raise ConfigError(
                "predict_array: patch is required in reference mode (e.g. patch=(32, 64, 64)); "
                "or pass mode='fast' to size tiles for the device."
            )
        tile, step = fit_tiles(shape, max_tile or fast_max_tile(device_type, shape), share)
    else:
        z, y, x = (min(int(p), n) for p, n in zip(patch, shape))
        tile = (z, y, x)
        sz, sy, sx = stride if stride is not None else stride_for_overlap(tile, share)
        step = (int(sz), int(sy), int(sx))
    hz, hy, hx = (int(h) for h in (halo or (0, 0, 0)))
    edge = (0 if tile[0] == 1 else hz, hy, hx)
    batch = batch_size or (FAST_BATCH.get(device_type, 1) if fast else 1)
    return Window(tile, step, edge, blending or ("gaussian" if fast else "overwrite"), batch)


def check_halo(halo: Sequence[int], volume_shape: Sequence[int], where: str) -> None:
    """Mirror padding needs a halo smaller than the volume on every axis."""
    bad = [
        (axis, h, n) for axis, h, n in zip("ZYX", halo, volume_shape) if h < 0 or (h > 0 and h >= n)
    ]
    if bad:
        axis, h, n = bad[0]
        raise DataError(
            f"loaders.test.slice_builder.halo_shape {list(halo)} is too big for {where}, whose "
            f"(Z,Y,X) shape is {tuple(volume_shape)}: the halo is mirrored from inside the "
            f"volume, so each entry must be smaller than the volume along its axis ({axis}: "
            f"{h} >= {n}), and 0 along z for 2D data. Reduce halo_shape."
        )


def array_batches(
    volume: Any, indices: Sequence[Index], halo: Sequence[int], batch_size: int
) -> Iterator[tuple[torch.Tensor, list[Index]]]:
    """(N,C,Z,Y,X) float32 batches of halo-grown patches read from ``volume`` (a Volume)."""
    import torch

    from unet_core.io.volume import read_padded

    for start in range(0, len(indices), batch_size):
        chunk = list(indices[start : start + batch_size])
        blocks = []
        for index in chunk:
            block = np.asarray(read_padded(volume, index, halo), dtype=np.float32)
            blocks.append(block[None] if block.ndim == 3 else block)
        yield torch.from_numpy(np.stack(blocks)), chunk


def forward_patches(
    forward: Callable[[Any], np.ndarray],
    batches: Iterable[tuple[Any, Sequence[Any]]],
    halo: Sequence[int],
    *,
    out_channels: int,
    channel: int | None = None,
    where: str = "the input",
) -> Iterator[tuple[np.ndarray, Index]]:
    """(probabilities (C,*patch), spatial index) of every patch: forwarded, halo cropped.

    A ``forward`` that is ``asynchronous`` (a PatchForward on a GPU) gets the next batch
    submitted before the caller blends this one, so the device never waits for the host.
    """
    from unet_core.engine.work_progress import current

    crop = tuple(slice(h, -h if h else None) for h in halo)
    for output, indices in _outputs(forward, batches):
        probs = output[(slice(None), slice(None), *crop)]
        current().advance(len(indices))
        if channel is not None:
            probs = probs[:, channel : channel + 1]
        elif probs.shape[1] != out_channels:
            raise ConfigError(
                f"The model returned {probs.shape[1]} channels but model.out_channels is "
                f"{out_channels}; fix model.out_channels."
            )
        for prob, index in zip(probs, indices):
            index = tuple(index)[-3:]
            extent = tuple(s.stop - s.start for s in index)
            if prob.shape[1:] != extent:
                raise DataError(
                    f"The model's output patch {prob.shape[1:]} (after cropping the halo "
                    f"{list(halo)}) does not match the input patch {extent} of {where}; the "
                    "model must keep the spatial size (e.g. conv_padding: 1)."
                )
            yield prob, index


def _outputs(
    forward: Callable[[Any], np.ndarray], batches: Iterable[tuple[Any, Sequence[Any]]]
) -> Iterator[tuple[np.ndarray, Sequence[Any]]]:
    """(forward(batch), indices) in order; one batch ahead when ``forward`` is asynchronous."""
    submit = getattr(forward, "submit", None)
    if submit is None or not getattr(forward, "asynchronous", False):
        for batch, indices in batches:
            yield forward(batch), indices
        return
    waiting: tuple[Any, Sequence[Any]] | None = None
    for batch, indices in batches:
        started = (submit(batch), indices)
        if waiting is not None:
            yield waiting[0].result(), waiting[1]
        waiting = started
    if waiting is not None:
        yield waiting[0].result(), waiting[1]


def blend_in_memory(
    patches: Patches, channels: int, volume: Sequence[int], blending: str
) -> np.ndarray:
    """The blended (C,Z,Y,X) float32 volume of all ``patches``."""
    from unet_core.prediction.blending import VolumeAccumulator

    acc = VolumeAccumulator(channels, volume, blending)  # type: ignore[arg-type]
    for prob, index in patches:
        acc.add(prob, index)
    return acc.result()


def blend_blocks(
    patches: Patches,
    indices: Sequence[Index],
    channels: int,
    volume: Sequence[int],
    block: Sequence[int],
    blending: str,
    sink: Callable[[Index, np.ndarray], None],
    *,
    memory_bytes: float = OUT_BLOCK_MEMORY,
    scratch_dir: str | None = None,
) -> dict[str, int]:
    """Blend ``patches`` and hand each finished (C,*block) block to ``sink`` exactly once;
    returns the peak number of open blocks and how many were spilled to scratch."""
    from unet_core.prediction.blending import BlockAccumulator

    acc = BlockAccumulator(
        indices,
        channels,
        volume,
        block,
        blending,  # type: ignore[arg-type]
        sink,
        scratch_dir=scratch_dir,
    )
    acc.max_open_blocks = max(1, int(memory_bytes // acc.block_nbytes))
    try:
        for prob, index in patches:
            acc.add(prob, index)
    except BaseException:
        acc.close(check=False)
        raise
    acc.close()
    return {"peak_open_blocks": acc.peak_open_blocks, "spilled_blocks": acc.spills}


def _device(device: Any) -> torch.device:
    import torch

    return device if isinstance(device, torch.device) else torch.device(device or "cpu")


def predict_array(
    model: torch.nn.Module,
    array: Any,
    *,
    patch: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    overlap: float | None = None,
    halo: Sequence[int] | None = None,
    blending: Literal["overwrite", "gaussian"] | None = None,
    batch_size: int | None = None,
    device: Any = "cpu",
    precision: Literal["auto", "none", "bf16", "fp16"] | None = None,
    tta: Literal["none", "flips", "flips_rot90"] = "none",
    channels_last: bool | None = None,
    mode: Mode = "reference",
    out: Any = None,
    memory_budget: int | None = None,
    compile: bool = False,
) -> Any:
    """Predict ``array`` ((Z,Y,X), (C,Z,Y,X) or a 2D (Y,X) image) patch by patch.

    ``mode="reference"`` is pytorch-3dunet's prediction (patches of ``patch`` every ``stride``
    (default: no overlap, or ``overlap``), ``halo`` mirrored at the border and cropped, later
    patches overwrite earlier ones); ``mode="fast"`` sizes tiles for the device, overlaps them
    by 25 % and blends them with gaussian weights. Keys given explicitly win over the mode.
    ``precision`` defaults to fp32 (``none``) in reference mode and ``auto`` (bf16 where the
    device computes it natively) in fast mode, whose tiles are those ``unet predict`` measures
    (cached; within ``memory_budget`` bytes).
    ``compile`` runs the model through ``torch.compile`` (worth its start-up on a GPU and a
    large volume: docs/performance.md).
    Returns the (C,Z,Y,X) float32 probabilities, or ``out`` filled block by block.
    """
    from unet_core.engine.amp import default_channels_last
    from unet_core.io.volume import Volume
    from unet_core.prediction.inference import PatchForward
    from unet_core.prediction.prefetch import prefetched
    from unet_core.prediction.tile_sweep import plan_tiles

    volume = Volume([array], what="the array", path="<array>")
    shape = volume.spatial_shape
    dev = _device(device)
    dims = int(getattr(model, "spatial_dims", 3))
    if channels_last is None:
        channels_last = default_channels_last(dims, dev.type) or (
            dims == 3 and mode == "fast" and dev.type == "cuda"
        )
    amp = precision or ("auto" if mode == "fast" else "none")
    forward = PatchForward(
        model, dev, amp=amp, tta=tta, channels_last=channels_last, compile=compile
    )
    max_tile: tuple[int, ...] | None = None
    if mode == "fast" and patch is None and shape[0] > 1:  # the tiles `unet predict` measures
        plan = plan_tiles(
            forward,
            model,
            dev,
            precision=forward.precision.mode,
            in_channels=int(getattr(model, "in_channels", 1)),
            max_tile=shape,
            budget=memory_budget,
        )
        max_tile, batch_size = plan.tile, batch_size or plan.batch
    window = plan_window(
        shape,
        dev.type,
        mode=mode,
        patch=patch,
        stride=stride,
        overlap=overlap,
        halo=halo,
        blending=blending,
        batch_size=batch_size,
        max_tile=max_tile,
    )
    check_halo(window.halo, shape, "the array")
    indices = patch_grid(shape, window.patch, window.stride)
    channels = int(getattr(model, "out_channels", 0)) or _probe_channels(forward, volume)
    batches = prefetched(array_batches(volume, indices, window.halo, window.batch_size))
    patches = forward_patches(forward, batches, window.halo, out_channels=channels)
    if out is None:
        return blend_in_memory(patches, channels, shape, window.blending)
    expected = (channels, *shape)
    if tuple(out.shape) != expected:
        raise DataError(
            f"predict_array: out has shape {tuple(out.shape)} but the prediction is {expected} "
            "(channels, Z, Y, X); create out with that shape."
        )
    dtype = np.dtype(out.dtype)
    chunks = getattr(out, "chunks", None)
    block = tuple(chunks[-3:]) if isinstance(chunks, tuple) and len(chunks) >= 3 else window.patch

    def sink(index: Index, values: np.ndarray) -> None:
        out[(slice(None), *index)] = values.astype(dtype, copy=False)

    blend_blocks(patches, indices, channels, shape, block, window.blending, sink)
    return out


def _probe_channels(forward: Callable[[Any], np.ndarray], volume: Any) -> int:
    """Output channels of a model that does not declare ``out_channels``: one small forward."""
    import torch

    z, y, x = (min(n, 16) for n in volume.spatial_shape)
    block = np.asarray(volume[(slice(0, z), slice(0, y), slice(0, x))], dtype=np.float32)
    batch = torch.from_numpy((block[None] if block.ndim == 3 else block)[None])
    return int(forward(batch).shape[1])
