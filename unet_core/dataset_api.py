"""What dataset plugins build on besides :mod:`unet_core.io`: the seeded transform pipeline.

Dataset plugins (built-in or third-party) import from here and from ``unet_core.io``, never
from ``unet_core.engine``, whose layout may change.
"""

from __future__ import annotations

from unet_core.engine.pipeline import build_pipeline

__all__ = ["build_pipeline"]
