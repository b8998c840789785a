"""The per-user cache folder (downloads, pulled models, converted models).

One definition, so that ``unet data fetch``, ``unet models pull`` and the inference backends
share ``~/.cache/unet-core`` (Linux; the platform's cache folder elsewhere).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = "unet-core"


def user_cache_dir() -> Path:
    """platformdirs' user cache folder for unet-core (what pooch uses), read at each call so
    that ``XDG_CACHE_HOME`` set by a test or a job script applies."""
    try:
        import platformdirs
    except ImportError:  # the same folders, for installations without platformdirs
        if sys.platform == "darwin":
            return Path.home() / "Library" / "Caches" / APP
        if os.name == "nt":
            base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
            return Path(base) / APP / APP / "Cache"
        base = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
        return Path(base) / APP
    return Path(platformdirs.user_cache_dir(APP))
