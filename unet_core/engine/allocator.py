"""Keep freed tensor memory in the process instead of handing it back to the OS.

glibc serves large blocks with ``mmap`` and gives them back on ``free`` (and trims the heap
when its free top grows), so every forward pass of a 3D U-Net page-faults its activation
buffers in afresh: tens of MB per layer, zeroed by the kernel each time. Raising glibc's mmap
and trim thresholds lets the buffers of one forward be reused by the next. Measured on this
project's CPU (UNet3D f_maps 32, one 64^3 tile, bf16 autocast, 2 threads, six alternating
processes): median forward 0.34 s -> 0.24 s (1.43x), peak RSS +5-15 %.

``unet`` applies it to its own process (and Dask prediction workers); the Python API leaves
the caller's process alone unless :func:`keep_freed_memory` is called. ``UNET_KEEP_FREED_MEMORY=0``
turns it off. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

#: Opt-out: ``UNET_KEEP_FREED_MEMORY=0`` leaves the C library's defaults.
ENV = "UNET_KEEP_FREED_MEMORY"
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Blocks below this come from the heap (whose freed space is reused); glibc versions that
#: cap the threshold (at 32 MiB on 64-bit) get the cap.
_MMAP_THRESHOLDS = (2**30, 2**25)
#: The heap's free top is never trimmed below this (effectively: not trimmed).
_TRIM_THRESHOLD = 2**31 - 1

_applied: bool | None = None


def glibc_version() -> str | None:
    """``"glibc 2.36"``-style version of the process's C library, None when it is not glibc."""
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    return value if value and value.startswith("glibc") else None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True when they are set.

    Safe to call repeatedly and from any module: the first call decides.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1").strip().lower() in {"0", "false", "no", "off"}:
        log.debug("%s is off: the C library's allocator defaults stay", ENV)
        return False
    if glibc_version() is None:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_set = any(mallopt(_M_MMAP_THRESHOLD, value) == 1 for value in _MMAP_THRESHOLDS)
    trim_set = mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    _applied = mmap_set and trim_set
    log.debug("freed tensor memory is kept for reuse: %s", _applied)
    return _applied
