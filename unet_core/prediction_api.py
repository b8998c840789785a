"""What predictor plugins build on: the public, stable face of the prediction engine.

Predictors (built-in or third-party) import from here, never from ``unet_core.engine``: the
sliding window (:func:`predict_array` and its pieces), forward passes with AMP/TTA, blending,
output files written atomically through a volume format, scores and memory hygiene. The
engine's module layout may change; these names stay.
"""

from __future__ import annotations

from unet_core.array_prediction import (
    Window,
    array_batches,
    blend_blocks,
    blend_in_memory,
    check_halo,
    forward_patches,
    plan_window,
    predict_array,
)
from unet_core.engine.amp import default_channels_last
from unet_core.engine.precision import announce as announce_precision
from unet_core.formats import VolumeInfo, VolumeWriter
from unet_core.interfaces import BlockOutput
from unet_core.io.space import check_space
from unet_core.prediction.backends import backend_forward
from unet_core.prediction.blending import BlockAccumulator, VolumeAccumulator
from unet_core.prediction.inference import PatchForward, compile_pays, compile_threshold_seconds
from unet_core.prediction.memory import return_freed_buffers
from unet_core.prediction.output import (
    Written,
    atomic_output,
    check_output,
    check_writable,
    output_path,
    quantize,
    segmentation_dtype,
    source_attrs,
)
from unet_core.prediction.output_files import add_pyramid, check_pyramid, open_output, output_file
from unet_core.prediction.prefetch import prefetched
from unet_core.prediction.scores import ScoreCounter, segment
from unet_core.prediction.stop import raise_if_stopped
from unet_core.prediction.tile_sweep import TilePlan, parse_size, plan_tiles
from unet_core.tiling import (
    FAST_BATCH,
    FAST_OVERLAP,
    FAST_TILE,
    Index,
    fast_max_tile,
    fit_tiles,
    patch_grid,
    redundancy,
    stride_for_overlap,
)

__all__ = [
    "FAST_BATCH",
    "FAST_OVERLAP",
    "FAST_TILE",
    "BlockAccumulator",
    "BlockOutput",
    "Index",
    "PatchForward",
    "ScoreCounter",
    "TilePlan",
    "VolumeAccumulator",
    "VolumeInfo",
    "VolumeWriter",
    "Window",
    "Written",
    "add_pyramid",
    "announce_precision",
    "array_batches",
    "backend_forward",
    "atomic_output",
    "blend_blocks",
    "blend_in_memory",
    "check_halo",
    "check_output",
    "check_pyramid",
    "check_space",
    "check_writable",
    "compile_pays",
    "compile_threshold_seconds",
    "default_channels_last",
    "fast_max_tile",
    "fit_tiles",
    "forward_patches",
    "open_output",
    "output_file",
    "output_path",
    "parse_size",
    "patch_grid",
    "plan_tiles",
    "prefetched",
    "plan_window",
    "predict_array",
    "quantize",
    "raise_if_stopped",
    "redundancy",
    "return_freed_buffers",
    "segment",
    "source_attrs",
    "segmentation_dtype",
    "stride_for_overlap",
]
