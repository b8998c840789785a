"""LazyPredictor: out-of-core prediction, output streamed block by block.

Patches are read one by one (use ``loaders.dataset: LazyHDF5Dataset``), blended into output
blocks, and each block is written to a chunked HDF5 dataset as soon as every patch touching
it is in (:class:`unet_core.engine.blending.BlockAccumulator`); unfinished blocks beyond
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

from unet_core.engine.blending import BlockAccumulator, Index
from unet_core.engine.memory import return_freed_buffers
from unet_core.engine.prediction_output import (
    Written,
    atomic_output,
    check_output,
    check_writable,
    h5_compression,
    open_h5,
    quantize,
    record_source,
    segmentation_dtype,
)
from unet_core.engine.prediction_scores import ScoreCounter, segment
from unet_core.errors import ConfigError
from unet_core.interfaces import BlockwisePostprocessor
from unet_core.io.h5write import write_array
from unet_plugins.predictors.settings import PredictorConfig
from unet_plugins.predictors.standard import StandardPredictor, describe_dataset, spatial


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
        if v is not None and (len(v) != 3 or any(x < 1 for x in v)):
            raise ValueError("expected 3 positive integers (Z, Y, X)")
        return v


#: Output chunk (Z,Y,X) of the streamed output when `chunks` is not set: ~2 MB of float32.
LAZY_CHUNKS = (32, 128, 128)


class LazyPredictor(StandardPredictor):
    """Out-of-core prediction: patches are read one by one (with a lazy dataset) and finished
    output blocks are written to a chunked HDF5 dataset, so memory does not grow with the
    volume."""

    Config = LazyConfig  # type: ignore[assignment]
    streaming = True
    config: LazyConfig

    def __init__(self, config: LazyConfig, **context: Any) -> None:
        super().__init__(config, **context)
        return_freed_buffers()  # patch buffers go back to the OS (see engine.memory)
        if config.output_format != "hdf5":
            raise ConfigError(
                "predictor.output_format: LazyPredictor streams into a chunked HDF5 dataset; "
                "use output_format: hdf5, or StandardPredictor for TIFF output."
            )

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
        start = time.perf_counter()
        with atomic_output(path, self.overwrite, needed) as tmp, open_h5(tmp) as f:
            record_source(f, str(dataset.file_path))
            sink, counter, close_gt = self._sink(f, dataset, volume, chunks)
            acc = BlockAccumulator(
                indices,
                self.channels,
                volume,
                block,
                self.settings.blending,  # type: ignore[arg-type]
                sink,
                max_open_blocks=1,
                scratch_dir=str(path.parent),
            )
            acc.max_open_blocks = max(1, int(cfg.max_block_memory_mb * 2**20 // acc.block_nbytes))
            try:
                for prob, index in self.patches(dataset):
                    acc.add(prob, index)
            except BaseException:
                acc.close(check=False)
                raise
            finally:
                close_gt()
            acc.close()
            names = [cfg.output_dataset]
            if self.postprocessor is not None:
                names.append(self._postprocess(f, chunks, block))
            stats = self._stats(dataset, volume, time.perf_counter() - start)
            stats.update(peak_open_blocks=acc.peak_open_blocks, spilled_blocks=acc.spills)
        metrics = counter.result() if counter is not None else None
        return [Written(str(path), names, metrics, stats, str(dataset.file_path))]

    def _sink(
        self, f: Any, dataset: Any, volume: tuple[int, ...], chunks: tuple[int, ...]
    ) -> tuple[Callable[[Index, np.ndarray], None], ScoreCounter | None, Callable[[], None]]:
        """The block writer (and per-block scoring); returns it, the counter and a closer."""
        cfg = self.config
        comp = h5_compression(cfg.compression)
        if cfg.save_segmentation:
            shape: tuple[int, ...] = volume
            dtype: Any = np.uint16
            ds_chunks: tuple[int, ...] = chunks
        else:
            shape = (self.channels, *volume)
            dtype = np.dtype(cfg.output_dtype)
            ds_chunks = (1, *chunks)
        ds = f.create_dataset(
            cfg.output_dataset, shape=shape, dtype=dtype, chunks=ds_chunks, fillvalue=0, **comp
        )
        describe_dataset(ds, cfg.output_dataset, cfg)
        counter = gt = source = None
        if cfg.performance_metric is not None:
            from unet_core.io.volume import Source

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

        return sink, counter, (source.close if source is not None else lambda: None)

    def _postprocess(self, f: Any, chunks: tuple[int, ...], block: tuple[int, ...]) -> str:
        """Instance segmentation of the finished output: block by block where the
        postprocessor can (``segment_blocks``, e.g. ConnectedComponents), else in memory."""
        cfg = self.config
        source = f[cfg.output_dataset]
        scale = 1.0 / 255.0 if cfg.output_dtype == "uint8" and not cfg.save_segmentation else 1.0
        compression = h5_compression(cfg.compression)

        def read(index: Index) -> np.ndarray:
            values = source[(slice(None), *index)] if source.ndim == 4 else source[index]
            return np.asarray(values, dtype=np.float32) * np.float32(scale)

        if isinstance(self.postprocessor, BlockwisePostprocessor):
            volume = tuple(source.shape[-3:])

            def open_output(n: int) -> Callable[[Index, np.ndarray], None]:
                ds = f.create_dataset(
                    "segmentation",
                    shape=volume,
                    dtype=segmentation_dtype(n),
                    chunks=chunks,
                    **compression,
                )
                return ds.__setitem__

            self.postprocessor.segment_blocks(
                read, volume, block, open_output, scratch_dir=str(Path(f.filename).parent)
            )
            return "segmentation"
        full = tuple(slice(0, n) for n in source.shape[-3:])
        labels = self.postprocessor(read(full))
        labels = labels.astype(segmentation_dtype(int(labels.max(initial=0))))
        write_array(f, "segmentation", labels, chunks=chunks, compression=compression)
        return "segmentation"
