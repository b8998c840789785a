"""Keep a long streaming run's memory at what it uses, not what it once used.

glibc serves large allocations with mmap and returns them on free, but after the first such
free it raises its mmap threshold (up to 32 MiB) so later patch-sized buffers come from the
heap, where freed space is kept: a streaming prediction then holds a few hundred MB it no
longer uses. Fixing the threshold at 1 MiB returns every patch buffer to the OS on free.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h
THRESHOLD_BYTES = 1 << 20


def return_freed_buffers() -> bool:
    """Fix glibc's mmap threshold (Linux only); returns whether it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    ok = bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    if not ok:
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused")
    return ok
