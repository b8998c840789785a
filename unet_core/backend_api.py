"""What inference-backend plugins (``unet.backends``) build on: the public face of the pieces.

A backend turns the eval-mode network into something faster to run: it exports it once
(:func:`export_onnx`, dynamic batch and spatial axes, checked against the network before it
is kept), keeps the result in the user cache (:func:`cached_conversion`, keyed by the
weights digest the engine hands to ``prepare``; :func:`derived_cache` names a folder for what
it derives from an entry, such as compiled kernels) and runs it. These names stay when the
engine's modules move.
"""

from __future__ import annotations

from unet_core.exchange.onnx_export import INPUT_NAME, OPSET, export_onnx
from unet_core.exchange.parity import PARITY_TOLERANCE
from unet_core.prediction.converted_models import (
    Converted,
    cache_root,
    cached_conversion,
    derived_cache,
    model_digest,
)

__all__ = [
    "INPUT_NAME",
    "OPSET",
    "PARITY_TOLERANCE",
    "Converted",
    "cache_root",
    "cached_conversion",
    "derived_cache",
    "export_onnx",
    "model_digest",
]
