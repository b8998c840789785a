"""What dataset and transform plugins build on besides :mod:`unet_core.io`: the seeded
transform pipeline, and the bioimage.io preprocessing steps a model package declares.

Dataset plugins (built-in or third-party) import from here and from ``unet_core.io``, never
from ``unet_core.engine``, whose layout may change.
"""

from __future__ import annotations

from unet_core.engine.pipeline import build_pipeline
from unet_core.exchange.preprocessing import Step, apply_steps

__all__ = ["Step", "apply_steps", "build_pipeline"]
