"""Matplotlib figures written as PNG atomically (a preview or the demo's figure appears whole)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def write_png(fig: Any, path: str | os.PathLike[str], *, dpi: int) -> Path:
    """Save ``fig`` to ``path`` through a temporary file, then close it (also on failure)."""
    import matplotlib.pyplot as plt

    from unet_core.io.atomic import atomic_output

    target = Path(path)
    try:
        with atomic_output(target) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return target
