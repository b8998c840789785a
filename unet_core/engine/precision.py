"""``amp: auto``: bf16 autocast where the device computes bf16 natively, float32 elsewhere.

bf16 autocast is 3-4x faster than float32 on CPUs with AMX or AVX-512 BF16 and on GPUs of
compute capability >= 8, but many times *slower* where bf16 is emulated; so ``auto`` decides
from what the hardware has, once per run. :func:`detect_native_bf16` takes its inputs
explicitly (CPU flags, CUDA capability) so that tests can simulate any machine;
:func:`resolve_precision` reads the real ones and says why it chose what it chose.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unet_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: The precision keys (``trainer.amp``, ``predictor.amp``) and what they accept.
MODES = ("auto", "none", "bf16", "fp16")
#: CPU flags (``/proc/cpuinfo``) of native bf16 matrix arithmetic, best first, with their names.
CPU_BF16_FLAGS = {"amx_bf16": "AMX-BF16", "avx512_bf16": "AVX512-BF16"}
#: CUDA compute capability from which bf16 tensor cores exist (Ampere).
CUDA_BF16_CAPABILITY = (8, 0)


@dataclass(frozen=True)
class ResolvedPrecision:
    """The precision a run uses (``none``/``bf16``/``fp16``), what was asked and why."""

    mode: str
    requested: str
    reason: str

    def describe(self) -> str:
        """One line for the user, e.g. ``precision: bf16 (auto: CPU has AMX-BF16)``."""
        name = "fp32" if self.mode == "none" else self.mode
        return f"precision: {name} ({self.reason})"

    def record(self) -> dict[str, str]:
        """What checkpoints and run.json keep of it."""
        return {"mode": self.mode, "requested": self.requested, "reason": self.reason}


def detect_native_bf16(
    device_type: str,
    *,
    cpu_flags: Iterable[str] = (),
    cuda_capability: tuple[int, int] | None = None,
) -> str | None:
    """Why this device computes bf16 natively (``CPU has AMX-BF16``), or None if it does not."""
    if device_type == "cpu":
        flags = set(cpu_flags)
        for flag, name in CPU_BF16_FLAGS.items():
            if flag in flags:
                return f"CPU has {name}"
        return None
    if device_type == "cuda" and cuda_capability is not None:
        if tuple(cuda_capability) >= CUDA_BF16_CAPABILITY:
            major, minor = cuda_capability
            return f"GPU compute capability {major}.{minor}"
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cuda_capability(device: torch.device) -> tuple[int, int] | None:
    import torch

    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return int(major), int(minor)


def resolve_precision(
    requested: str,
    device: torch.device,
    *,
    key: str = "trainer.amp",
    flags: Iterable[str] | None = None,
    capability: tuple[int, int] | None = None,
) -> ResolvedPrecision:
    """``requested`` (auto/none/bf16/fp16) on ``device`` -> the mode used and why.

    ``flags``/``capability`` default to this machine's; explicit choices are checked (fp16
    needs CUDA; bf16 runs on cpu and cuda), ``auto`` never fails.
    """
    if requested not in MODES:
        raise ConfigError(f"{key}: {requested!r} is not one of {', '.join(MODES)}.")
    if requested == "auto":
        native = detect_native_bf16(
            device.type,
            cpu_flags=cpu_flags() if flags is None else flags,
            cuda_capability=cuda_capability(device) if capability is None else capability,
        )
        if native is not None:
            return ResolvedPrecision("bf16", "auto", f"auto: {native}")
        where = "CPU" if device.type == "cpu" else str(device)
        return ResolvedPrecision("none", "auto", f"auto: {where} has no native bf16")
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError(
            f"{key}: fp16 needs a CUDA device, but this run uses {device}. Use {key}: auto "
            "(bf16 where the device has it), bf16 or none."
        )
    if requested == "bf16" and device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"{key}: bf16 autocast is supported on cpu and cuda, not {device.type}; set "
            f"{key}: none (or auto)."
        )
    return ResolvedPrecision(requested, requested, f"{key}: {requested}")


def announce(resolved: ResolvedPrecision) -> None:
    """Print the choice once per run, on stderr (stdout may carry a report or JSON), unless
    unet-core's info lines were silenced (``unet -q``, or a caller who set the level)."""
    logger = logging.getLogger("unet_core")
    if logger.level != logging.NOTSET and logger.level > logging.INFO:
        return
    print(resolved.describe(), file=sys.stderr, flush=True)
