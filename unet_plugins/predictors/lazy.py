"""LazyPredictor: out-of-core prediction, output streamed block by block.

Patches are read one by one (use ``loaders.dataset: LazyHDF5Dataset``), blended into output
blocks, and each block is written to the output format's array (a chunked HDF5 dataset for
``hdf5``) as soon as every patch touching it is in (:func:`unet_core.prediction_api.blend_blocks`);
unfinished blocks beyond
``max_block_memory_mb`` wait in a scratch file. Memory depends on patch, batch and block
size, not on the volume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from unet_core.config import block_shape
from unet_core.interfaces import BlockwisePostprocessor
from unet_core.prediction_api import (
    Index,
    ScoreCounter,
    VolumeInfo,
    VolumeWriter,
    Written,
    blend_blocks,
    check_output,
    check_writable,
    open_output,
    quantize,
    return_freed_buffers,
    segment,
    segmentation_dtype,
)
from unet_plugins.predictors.settings import PredictorConfig
from unet_plugins.predictors.standard import (
    StandardPredictor,
    input_info,
    spatial,
)


class LazyConfig(PredictorConfig):
    """StandardPredictor's keys plus the block geometry of the streamed output."""

    block_shape: list[int] | None = Field(
        None,
        description="(Z,Y,X) of the output blocks kept in memory until complete; default "
        "twice the chunk shape per axis.",
    )
    max_block_memory_mb: float = Field(
        1024.0,
        gt=0,
        description="Memory for unfinished blocks; beyond it the oldest go to a scratch file "
        "next to the output and come back when needed.",
    )

    @field_validator("block_shape")
    @classmethod
    def _block(cls, v: list[int] | None) -> list[int] | None:
        return block_shape(v)


#: Output chunk (Z,Y,X) of the streamed output when `chunks` is not set: ~2 MB of float32.
LAZY_CHUNKS = (32, 128, 128)


class LazyPredictor(StandardPredictor):
    """Out-of-core prediction: patches are read one by one (with a lazy dataset) and finished
    output blocks are written to the output format (chunked HDF5 by default), so memory does
    not grow with the volume (with formats that write blocks to disk)."""

    Config = LazyConfig  # type: ignore[assignment]
    streaming = True
    config: LazyConfig

    def __init__(self, config: LazyConfig, **context: Any) -> None:
        super().__init__(config, **context)
        return_freed_buffers()  # patch buffers go back to the OS (see engine.memory)

    def geometry(self, volume: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(chunk shape, block shape), the block a multiple of the chunk."""
        chunks = tuple(min(int(c), v) for c, v in zip(self.config.chunks or LAZY_CHUNKS, volume))
        if self.config.block_shape is not None:
            block = tuple(min(int(b), v) for b, v in zip(self.config.block_shape, volume))
        else:
            block = tuple(min(2 * c, v) for c, v in zip(chunks, volume))
        return chunks, block

    def __call__(self, dataset: Any) -> list[Written]:
        volume = self._check(dataset)
        path = self.output_file(dataset)
        check_writable(path, self.overwrite)
        needed = self._check_space(path, volume)
        cfg = self.config
        chunks, block = self.geometry(volume)
        indices = [spatial(s) for s in dataset.raw_slices]
        info = input_info(dataset)
        start = time.perf_counter()
        with open_output(path, cfg.output_format, overwrite=self.overwrite, needed=needed) as out:
            sink, counter, close_gt, written = self._sink(out, dataset, volume, chunks, info)
            try:
                blocks = blend_blocks(
                    self.patches(dataset),
                    indices,
                    self.channels,
                    volume,
                    block,
                    self.settings.blending,
                    sink,
                    memory_bytes=cfg.max_block_memory_mb * 2**20,
                    scratch_dir=str(path.parent),
                )
            finally:
                close_gt()
            names = [cfg.output_dataset]
            if self.postprocessor is not None:
                names.append(self._postprocess(out, written, chunks, block, info, path))
            self.add_pyramids(out, names)
            stats = self._stats(dataset, volume, time.perf_counter() - start)
            stats.update(blocks)
        metrics = counter.result() if counter is not None else None
        return [Written(str(path), names, metrics, stats, str(dataset.file_path))]

    def _sink(
        self,
        out: VolumeWriter,
        dataset: Any,
        volume: tuple[int, ...],
        chunks: tuple[int, ...],
        info: VolumeInfo,
    ) -> tuple[Callable[[Index, np.ndarray], None], ScoreCounter | None, Callable[[], None], Any]:
        """The block writer (and per-block scoring); returns it, the counter, a closer and
        the output array."""
        cfg = self.config
        shape, dtype = self.output_layout(volume)
        ds = out.create(
            cfg.output_dataset,
            shape,
            dtype,
            chunks=chunks,
            compression=cfg.compression,
            info=info.with_axes(len(shape)),
            attrs=self.array_attrs(dtype, cfg.output_dataset, str(dataset.file_path)),
        )
        counter = gt = source = None
        if cfg.performance_metric is not None:
            from unet_core.io import Source

            source = Source(str(dataset.file_path))
            gt = source.volume(str(cfg.gt_internal_path), key="predictor.gt_internal_path")
            counter = ScoreCounter(cfg.performance_metric, self.channels, str(dataset.file_path))

        def sink(index: Index, values: np.ndarray) -> None:
            start = (0, *(int(s.start or 0) for s in index))
            check_output(values, self._checked_dtype, str(dataset.file_path), start)
            labels = segment(values) if (cfg.save_segmentation or counter) else None
            if cfg.save_segmentation:
                ds[index] = labels
            else:
                ds[(slice(None), *index)] = quantize(values, cfg.output_dtype)
            if counter is not None and gt is not None:
                truth = gt[index] if gt.ndim == 3 else gt[(slice(None), *index)]
                masks = values > 0.5 if truth.ndim == 4 else None
                assert labels is not None
                counter.update(labels, truth, masks)

        return sink, counter, (source.close if source is not None else lambda: None), ds

    def _postprocess(
        self,
        out: VolumeWriter,
        source: Any,
        chunks: tuple[int, ...],
        block: tuple[int, ...],
        info: VolumeInfo,
        path: Path,
    ) -> str:
        """Instance segmentation of the finished output: block by block where the
        postprocessor can (``segment_blocks``, e.g. ConnectedComponents), else in memory."""
        cfg = self.config
        scale = 1.0 / 255.0 if cfg.output_dtype == "uint8" and not cfg.save_segmentation else 1.0
        volume = tuple(source.shape[-3:])

        def read(index: Index) -> np.ndarray:
            values = source[(slice(None), *index)] if len(source.shape) == 4 else source[index]
            return np.asarray(values, dtype=np.float32) * np.float32(scale)

        def create(n: int) -> Any:
            return out.create(
                "segmentation",
                volume,
                segmentation_dtype(n),
                chunks=chunks,
                compression=cfg.compression,
                info=info.with_axes(3),
            )

        if isinstance(self.postprocessor, BlockwisePostprocessor):

            def open_output(n: int) -> Callable[[Index, np.ndarray], None]:
                return create(n).__setitem__  # type: ignore[no-any-return]

            self.postprocessor.segment_blocks(
                read, volume, block, open_output, scratch_dir=str(path.parent)
            )
            return "segmentation"
        assert self.postprocessor is not None
        labels = self.postprocessor(read(tuple(slice(0, n) for n in volume)))
        out.write(
            "segmentation",
            labels.astype(segmentation_dtype(int(labels.max(initial=0)))),
            chunks=chunks,
            compression=cfg.compression,
            info=info.with_axes(3),
        )
        return "segmentation"
