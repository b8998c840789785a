"""Forward passes for prediction: eval mode, inference_mode, optional autocast, memory format,
torch.compile and test-time augmentation, with 2D models fed (N,C,Y,X).

:class:`PatchForward` turns a batch of (halo-padded) input patches (N,C,Z,Y,X) into
probabilities (N,C',Z,Y,X) as float32 numpy, whatever the model's dimensionality, so that the
predictors never deal with these options themselves.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from unet_core.contracts import declared
from unet_core.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

TTA = Literal["none", "flips", "flips_rot90"]
AMP = Literal["auto", "none", "bf16", "fp16"]
#: A TTA transform: (flip dims, rot90 count in the Y,X plane), applied flip first.
Augment = tuple[tuple[int, ...], int]


def tta_transforms(mode: str, spatial_dims: int) -> list[Augment]:
    """The group of flips (and in-plane quarter turns) averaged by test-time augmentation.

    ``flips``: every subset of the spatial axes (8 in 3D, 4 in 2D). ``flips_rot90``: the
    in-plane quarter turns combined with in-plane and z flips (16 in 3D, 8 in 2D): the
    symmetries of the voxel grid that keep z along z (anisotropic data).
    """
    axes = (-3, -2, -1) if spatial_dims == 3 else (-2, -1)
    if mode == "none":
        return [((), 0)]
    if mode == "flips":
        return [
            (tuple(a for a, on in zip(axes, bits) if on), 0)
            for bits in np.ndindex(*(2,) * len(axes))
        ]
    if mode == "flips_rot90":
        z = [(), (-3,)] if spatial_dims == 3 else [()]
        return [(zf + xf, k) for zf in z for xf in [(), (-1,)] for k in range(4)]
    raise ConfigError(f"predictor.tta: {mode!r} is not one of none, flips, flips_rot90.")


class PatchForward:
    """``forward(batch) -> np.ndarray`` float32 probabilities, batch on any device."""

    def __init__(
        self,
        model: torch.nn.Module,
        device: torch.device,
        *,
        amp: str = "none",
        tta: str = "none",
        channels_last: bool = False,
        compile: bool = False,
        net: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        import torch

        from unet_core.engine.amp import memory_format, to_format

        self.device = device
        #: Whether :meth:`submit` returns before the output exists (a CUDA device): only then
        #: does keeping a second batch in flight overlap the host's blending with compute.
        self.asynchronous = device.type == "cuda"
        #: Host seconds spent in :meth:`submit` so far: the forwards themselves on a CPU (what
        #: a predictor's overhead is measured against), only their queueing on a GPU.
        self.seconds = 0.0
        self.spatial_dims = int(declared("models", model, "spatial_dims"))
        self.augments = tta_transforms(tta, self.spatial_dims)
        # ``net``: an inference backend's forward (unet_core.prediction.backends), which
        # brings its own precision and layout; None runs the model here in torch
        self._backend = net
        if net is None:
            self.autocast_dtype, self.precision = _autocast_dtype(amp, device)
        else:
            self.autocast_dtype, self.precision = None, _backend_precision(amp)
        fmt = memory_format(self.spatial_dims, channels_last and net is None)
        model = model.to(device)
        if fmt is not None:
            model = model.to(memory_format=fmt)  # type: ignore[call-overload]
        model.eval()
        self.model = model
        self._format = to_format(fmt)
        self._compiled: Callable[[Any], Any] | None = None
        if compile and net is None:
            self._compiled = torch.compile(model)

    def enable_compile(self) -> None:
        """Run the model through ``torch.compile`` from the next forward on (it compiles
        lazily, on that forward); a no-op with a backend or when already compiled."""
        import torch

        if self._backend is None and self._compiled is None:
            self._compiled = torch.compile(self.model)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _net(self, x: torch.Tensor) -> torch.Tensor:
        if self._backend is not None:
            return self._backend(x)
        if self._compiled is not None:
            try:
                return self._compiled(x)  # type: ignore[no-any-return]
            except Exception as exc:  # noqa: BLE001 - a compiler failure must not stop prediction
                warnings.warn(
                    f"torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                    "predicting without compilation.",
                    stacklevel=2,
                )
                self._compiled = None
        return self.model(x)  # type: ignore[no-any-return]

    def _once(self, x: torch.Tensor) -> torch.Tensor:
        """Model output for a (N,C,Z,Y,X) batch, squeezing z for 2D models."""
        import torch

        if self.spatial_dims == 2:
            if x.shape[-3] != 1:
                raise DataError(
                    f"A 2D model got patches of shape {tuple(x.shape[-3:])}; 2D models need "
                    "a singleton z. Set loaders.test.slice_builder.patch_shape to [1, Y, X] "
                    "(and halo_shape z to 0), or use a 3D model."
                )
            x = x[..., 0, :, :]
        with self._autocast():
            y = self._net(self._format(x))
        y = y.float()
        if self.spatial_dims == 2:
            y = torch.unsqueeze(y, -3)
        return y

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        return self.submit(batch).result()

    def submit(self, batch: torch.Tensor) -> ForwardInFlight:
        """Start the forward of ``batch``; its probabilities reach the host on ``result()``.

        On a GPU the kernels and the copy back into pinned host memory are only queued, so
        the caller can blend the previous batch while this one computes (see
        :func:`unet_core.array_prediction.forward_patches`); elsewhere it computes now.
        """
        from unet_core.prediction.stop import raise_if_stopped

        raise_if_stopped()  # a SIGTERM/SIGINT stops prediction between patches
        start = time.perf_counter()
        try:
            return self._submit(batch)
        finally:
            self.seconds += time.perf_counter() - start

    def _submit(self, batch: torch.Tensor) -> ForwardInFlight:
        import torch

        with torch.inference_mode():
            if self.device.type == "cuda" and not batch.is_pinned():
                batch = batch.pin_memory()  # a pageable source makes the copy synchronous
            x = batch.to(self.device, non_blocking=True).float()
            total: torch.Tensor | None = None
            for flips, k in self.augments:
                xt = _apply(x, flips, k, self.spatial_dims)
                y = _undo(self._once(xt), flips, k, self.spatial_dims)
                total = y if total is None else total.add_(y)
            assert total is not None
            if len(self.augments) > 1:
                total /= len(self.augments)
            if self.device.type != "cuda":
                return ForwardInFlight(total.cpu())
            host = torch.empty(total.shape, dtype=total.dtype, pin_memory=True)
            host.copy_(total, non_blocking=True)
            done = torch.cuda.Event()  # type: ignore[no-untyped-call]
            done.record()  # on the stream that queued the copy
            return ForwardInFlight(host, done)


class ForwardInFlight:
    """A submitted forward: host probabilities that may still be arriving from the device."""

    def __init__(self, host: torch.Tensor, done: Any = None) -> None:
        self._host = host
        self._done = done  # a CUDA event recorded after the copy to ``host``, or None

    def result(self) -> np.ndarray:
        """The (N,C,*spatial) float32 probabilities, once the copy has landed."""
        if self._done is not None:
            self._done.synchronize()
            self._done = None
        return self._host.numpy()


#: ``compile: auto`` on a GPU: what compiling the standard UNet3D cost (the first forward of
#: an evaluation graph, ~11 s on an H200) and what it gained (3.1x the eager forward on an
#: H100), docs/performance.md rows T2 and M. Compiling pays when the eager forwards would take
#: longer than COMPILE_SECONDS / (1 - 1 / COMPILE_SPEEDUP), ~16 s; twice that is required.
COMPILE_SECONDS = 11.0
COMPILE_SPEEDUP = 3.1
COMPILE_MARGIN = 2.0


def compile_pays(device_type: str, eager_seconds: float) -> bool:
    """Whether ``compile: auto`` compiles: on CUDA, when the estimated eager forwards of a
    volume (tile plan throughput x computed voxels) outlast twice the break-even time. Never
    on a CPU, where inductor's compiled forward was slower or 1.12x faster at 15-27 s of
    compiling (docs/performance.md)."""
    return device_type == "cuda" and eager_seconds >= compile_threshold_seconds()


def compile_threshold_seconds() -> float:
    """The estimated eager forward seconds above which ``compile: auto`` compiles on CUDA."""
    return COMPILE_MARGIN * COMPILE_SECONDS / (1.0 - 1.0 / COMPILE_SPEEDUP)


#: The in-plane (Y,X) axes that quarter turns rotate (2D and 3D alike: z stays z).
PLANE = (-2, -1)


def _apply(x: torch.Tensor, flips: Sequence[int], k: int, spatial_dims: int) -> torch.Tensor:
    import torch

    if flips:
        x = torch.flip(x, dims=tuple(flips))
    if k:
        x = torch.rot90(x, k, dims=PLANE)
    return x


def _undo(y: torch.Tensor, flips: Sequence[int], k: int, spatial_dims: int) -> torch.Tensor:
    import torch

    if k:
        y = torch.rot90(y, -k, dims=PLANE)
    if flips:
        y = torch.flip(y, dims=tuple(flips))
    return y


def _backend_precision(amp: str) -> Any:
    """What a run through an inference backend records: the backend's own precision key
    applies (``predictor.backend.precision``), ``predictor.amp`` does not."""
    from unet_core.engine.precision import ResolvedPrecision

    return ResolvedPrecision("backend", amp, "set by predictor.backend, not predictor.amp")


def _autocast_dtype(amp: str, device: torch.device) -> tuple[torch.dtype | None, Any]:
    """The autocast dtype of ``predictor.amp`` (``auto`` resolved here, once) and the choice."""
    import torch

    from unet_core.engine.precision import cpu_flags, detect_native_bf16, resolve_precision

    resolved = resolve_precision(amp, device, key="predictor.amp")
    if (
        resolved.requested == "bf16"
        and device.type == "cpu"
        and detect_native_bf16("cpu", cpu_flags=cpu_flags()) is None
    ):
        warnings.warn(
            "predictor.amp: bf16 on this CPU has no native bf16 instructions (no "
            "AVX512-BF16/AMX) and runs many times slower than float32; use amp: auto or none.",
            stacklevel=3,
        )
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(resolved.mode)
    return dtype, resolved
