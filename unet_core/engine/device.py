"""The ``device`` key -> a ``torch.device``, with one-paragraph errors for unusable choices.

The reference accepts only ``cpu``/``cuda``/``mps`` and picks cuda > mps > cpu when the key
is missing; we accept the same plus ``cuda:N`` and ``auto`` (= missing).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from unet_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


def available_device() -> str:
    """The best device this machine has: ``cuda`` > ``mps`` > ``cpu``."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(spec: str | None, *, local_rank: int | None = None) -> torch.device:
    """``spec`` (None/``auto``/cpu/cuda/cuda:N/mps) -> device; ``local_rank`` picks the GPU.

    Under torchrun each process uses ``cuda:<LOCAL_RANK>`` when the device is plain ``cuda``.
    """
    import torch

    name = (spec or "auto").strip().lower()
    if name == "auto":
        name = available_device()
        if name == "cpu":
            logger.warning("No GPU found: running on the CPU, which is slow for 3D U-Nets.")
    base, _, index = name.partition(":")
    if base not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise ConfigError(
            f"device: {spec!r} is not a device; expected cpu, cuda, cuda:N, mps or auto. "
            "Fix the `device` key (or pass --device)."
        )
    if base == "cpu":
        return torch.device("cpu")
    if base == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(
                f"device: {spec!r} was asked for but this torch build/machine has no MPS "
                "(Apple GPU) backend. Set device to cpu or remove the key to pick automatically."
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ConfigError(
            f"device: {spec!r} was asked for but CUDA is not available (torch "
            f"{torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA). "
            "Install a CUDA build of torch, check the GPU driver, or set device: cpu."
        )
    count = torch.cuda.device_count()
    gpu = int(index) if index else (local_rank or 0)
    if gpu >= count:
        raise ConfigError(
            f"device: {spec!r} needs GPU {gpu}, but only {count} GPU(s) are visible "
            "(check CUDA_VISIBLE_DEVICES and the device index / --nproc)."
        )
    return torch.device("cuda", gpu)
