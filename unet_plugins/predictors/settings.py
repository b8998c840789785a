"""The predictor keys shared by StandardPredictor and LazyPredictor, and what ``fast`` picks.

Reference keys keep the reference's defaults, so a reference config gives the reference's
output. Everything else is opt-in; ``fast: true`` switches on the recommended set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from unet_core.config import ComponentRef, RefOf, three_values, zyx
from unet_core.formats import output_format_name
from unet_core.interfaces import ComponentConfig
from unet_core.prediction_api import (
    FAST_BATCH,
    FAST_OVERLAP,
    FAST_TILE,
    default_channels_last,
    fast_max_tile,
    fit_tiles,
    parse_size,
)

#: ``predictor.backend``: an inference backend (``unet.backends``), by name or with its keys.
BackendRef = Annotated[ComponentRef[Any], RefOf("backends")]


def torch_backend() -> ComponentRef[Any]:
    """The default backend: the model runs in torch itself."""
    return ComponentRef.from_spec("backends", "torch", ("predictor", "backend"))


class PredictorConfig(ComponentConfig):
    """Keys of StandardPredictor (the reference's first, then unet-core's opt-in ones)."""

    # -- the reference's keys ---------------------------------------------------------------
    output_dataset: str = Field(
        "predictions", description="HDF5 dataset of the output (probabilities or labels)."
    )
    save_segmentation: bool = Field(
        False,
        description="Write labels (uint16) instead of probabilities: p > 0.5 for one channel, "
        "argmax over channels otherwise.",
    )
    prediction_channel: int | None = Field(
        None, ge=0, description="Keep only this output channel (shape (1,Z,Y,X))."
    )
    performance_metric: Literal["dice", "mean_iou"] | None = Field(
        None,
        description="Score the segmentation against `gt_internal_path` of the input file "
        "(per class; empty-in-both classes score 1, never NaN).",
    )
    gt_internal_path: str | None = Field(
        None, description="Ground-truth dataset in the input file for `performance_metric`."
    )
    patch_halo: list[int] | None = Field(
        None,
        description="Rejected: the reference stopped reading it in 2023. The context around "
        "each patch is loaders.test.slice_builder.halo_shape.",
    )
    # -- unet-core's opt-in keys ------------------------------------------------------------
    fast: bool = Field(
        False,
        description="Recommended speed settings: gaussian blending, tiles and batch sized for "
        "the device, 25% tile overlap, no halo. Keys set explicitly win.",
    )
    blending: Literal["overwrite", "gaussian"] | None = Field(
        None,
        description="overwrite: later patches overwrite overlaps (the reference); gaussian: "
        "importance-weighted average (no seams). Default overwrite, gaussian with fast.",
    )
    batch_size: int | None = Field(
        None, ge=1, description="Patches per forward pass (default loaders.batch_size)."
    )
    tta: Literal["none", "flips", "flips_rot90"] = Field(
        "none",
        description="Test-time augmentation: average over flips (8 in 3D) or flips and "
        "in-plane quarter turns (16 in 3D).",
    )
    amp: Literal["auto", "none", "bf16", "fp16"] | None = Field(
        None,
        description="Autocast precision of the forward pass: auto (bf16 where the device "
        "computes it natively, fp32 elsewhere), none (fp32), bf16, fp16 (CUDA only). Default: "
        "none (the reference's fp32), auto with fast. Blending and outputs stay fp32.",
    )
    output_dtype: Literal["float32", "float16", "uint8"] = Field(
        "float32",
        description="Dtype of the probabilities written; uint8 stores round(255 p) (needs "
        "outputs in [0, 1]), float16 holds up to +-65504. Output outside the range, NaN or inf "
        "is refused, never clipped or cast.",
    )
    compression: Literal["gzip", "lzf", "none"] | int = Field(
        "gzip", description="HDF5 compression: gzip (level 4), a gzip level 0-9, lzf or none."
    )
    chunks: list[int] | None = Field(
        None, description="HDF5 chunk shape (Z,Y,X) of the output; default h5py's choice."
    )
    pyramid_levels: int = Field(
        0,
        ge=0,
        le=16,
        description="Coarser levels of a multiscale pyramid added to an OME-Zarr output "
        "(each half the previous one: mean for probabilities, nearest voxel for labels).",
    )
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile the model before predicting. auto: only in fast mode on a "
        "CUDA device, and only when the volume's forwards, estimated from the measured tile "
        "plan, take longer than compiling saves (never on a CPU, where it did not pay).",
    )
    channels_last: bool | None = Field(
        None,
        description="channels_last_3d memory format: the same numbers to float tolerance, "
        "~10 % faster 3D convolutions on CPU. Default: on for 3D models on a CPU (and on "
        "CUDA with fast).",
    )
    tile_shape: list[int] | None = Field(
        None,
        description="Predict in tiles of this (Z,Y,X) shape instead of the slice builder's "
        "patch_shape (fast: chosen for the device, clipped to the volume).",
    )
    tile_overlap: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="Fraction of a tile shared with its neighbour "
        "when tiling is chosen here (default 0.25).",
    )
    tile_halo: list[int] | None = Field(
        None, description="Halo (Z,Y,X) of tiles chosen here (default 0: blending handles borders)."
    )
    memory_budget: int | str | None = Field(
        None,
        description="Memory fast mode's tiles may use (bytes, or with a unit: 512MiB, 4GiB, "
        "2GB); the tile edge and batch are the fastest measured within it. Default: half of "
        "the available RAM (CPU) or free GPU memory.",
    )
    output_format: str = Field(
        "hdf5",
        description="Volume format of the output, any installed one: hdf5 "
        "(`<stem>_predictions.h5`), tiff (`<stem>_predictions.tif`), or a plugin's.",
    )
    overwrite: bool = Field(
        False, description="Replace an existing output file (like `unet predict --overwrite`)."
    )
    backend: BackendRef = Field(
        default_factory=torch_backend,
        description="What runs the network: torch (default), onnxruntime or openvino "
        "(optional extras; CPU only, converted once and cached), or a plugin's backend: a name "
        "or {name: openvino, precision: auto|bf16|f32, threads, cache_dir}. With a backend "
        "other than torch, amp, channels_last and compile do not apply.",
    )

    _format = field_validator("output_format")(output_format_name)

    @field_validator("compression")
    @classmethod
    def _level(cls, v: Any) -> Any:
        if isinstance(v, int) and not 0 <= v <= 9:
            raise ValueError("a gzip level must be 0..9")
        return v

    @field_validator("memory_budget")
    @classmethod
    def _bytes(cls, v: int | str | None) -> int | None:
        return None if v is None else parse_size(v)

    @field_validator("patch_halo")
    @classmethod
    def _moved(cls, v: list[int] | None) -> list[int] | None:
        if v is not None:
            raise ValueError(
                f"predictor.patch_halo is not read (the reference stopped reading it in 2023, "
                f"so it did nothing there either); the context added around each patch is "
                f"loaders.test.slice_builder.halo_shape: move the value there (halo_shape: "
                f"{list(v)}) and delete patch_halo"
            )
        return v

    @field_validator("chunks", "tile_shape", "tile_halo", mode="before")
    @classmethod
    def _three(cls, v: Any) -> Any:
        return three_values(v)

    @field_validator("chunks", "tile_shape", "tile_halo")
    @classmethod
    def _non_negative(cls, v: list[int] | None) -> list[int] | None:
        return zyx(v, minimum=0)

    @model_validator(mode="after")
    def _cross(self) -> PredictorConfig:
        if self.performance_metric is not None and not self.gt_internal_path:
            raise ValueError(
                "performance_metric needs gt_internal_path: the ground-truth dataset in each "
                "input file (e.g. gt_internal_path: label)"
            )
        if self.tile_shape is not None and 0 in self.tile_shape:
            raise ValueError("tile_shape entries must be >= 1")
        if self.chunks is not None and 0 in self.chunks:
            raise ValueError("chunks entries must be >= 1")
        return self


@dataclass(frozen=True)
class Settings:
    """The effective options once ``fast`` and the device are known."""

    blending: str
    batch_size: int
    tile_shape: tuple[int, int, int] | None
    tile_overlap: float
    tile_halo: tuple[int, int, int]
    channels_last: bool
    amp: str = "none"


def resolve(
    config: PredictorConfig, device_type: str, loader_batch: int, spatial_dims: int = 3
) -> Settings:
    """Fill the unset keys: reference behaviour, or the recommended set under ``fast``.

    Reference mode keeps the reference's numbers (to ~1e-5): the only default it changes is
    the channels_last_3d layout of 3D models on a CPU (~10 % faster, differences ~4e-6). Fast
    mode also batches patches; on a CPU, channels_last with batches > 1 takes another oneDNN
    path whose logits differ by ~1e-4 relative, harmless for fast mode's blended output.
    """
    fast = config.fast
    blending = config.blending or ("gaussian" if fast else "overwrite")
    batch = config.batch_size or loader_batch
    if config.batch_size is None and fast:
        batch = max(batch, FAST_BATCH.get(device_type, 1))
    tile: tuple[int, int, int] | None = None
    if config.tile_shape is not None:
        z, y, x = config.tile_shape
        tile = (z, y, x)
    elif fast:
        edge = FAST_TILE.get(device_type, 64)
        tile = (edge, edge, edge)  # an upper bound; fit_tiles sizes the tiles per volume
    overlap = config.tile_overlap if config.tile_overlap is not None else FAST_OVERLAP
    hz, hy, hx = config.tile_halo or (0, 0, 0)
    channels_last = config.channels_last
    if channels_last is None:
        channels_last = default_channels_last(spatial_dims, device_type) or (
            spatial_dims == 3 and fast and device_type == "cuda"
        )
    amp = config.amp or ("auto" if fast else "none")
    return Settings(blending, batch, tile, overlap, (hz, hy, hx), channels_last, amp)


__all__ = [
    "FAST_BATCH",
    "FAST_OVERLAP",
    "FAST_TILE",
    "PredictorConfig",
    "Settings",
    "fast_max_tile",
    "fit_tiles",
    "resolve",
]
