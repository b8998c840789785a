"""StandardPredictor (output in memory) and LazyPredictor (output streamed block by block).

Both predict every patch of a test dataset with its halo, crop the halo, and blend the
centres into the output: ``overwrite`` (the reference: later patches win) or ``gaussian``.
The output goes to ``<output_dir or input folder>/<stem>_predictions.h5`` under a temporary
name first and is renamed into place only when complete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from unet_core import formats
from unet_core.errors import ConfigError
from unet_core.prediction_api import (
    BlockOutput,
    Index,
    PatchForward,
    ScoreCounter,
    TilePlan,
    VolumeInfo,
    VolumeWriter,
    Written,
    add_pyramid,
    backend_forward,
    blend_in_memory,
    check_halo,
    check_output,
    check_pyramid,
    check_space,
    check_writable,
    forward_patches,
    open_output,
    output_file,
    prefetched,
    quantize,
    redundancy,
    segment,
    segmentation_dtype,
    source_attrs,
)
from unet_core.prediction_api import announce_precision as announce
from unet_plugins.predictors.base import PredictorBase
from unet_plugins.predictors.settings import (
    PredictorConfig,
    resolve,
)
from unet_plugins.predictors.tile_choice import TileChoice

log = logging.getLogger(__name__)

#: Automatic batching (CPU default, fast mode) only for patches up to this size (with halo).
AUTO_BATCH_MAX_VOXELS = 96**3


def spatial(index: Sequence[slice]) -> Index:
    """The last three (spatial) slices of a dataset index."""
    return tuple(index)[-3:]


class StandardPredictor(TileChoice, PredictorBase):
    """Predict a test dataset and keep the output volume in memory (the reference's default)."""

    Config = PredictorConfig
    streaming = False
    #: Runs block by block on Dask (unet_core.interfaces.BlockwisePredictor).
    blockwise = True
    config: PredictorConfig

    def __init__(self, config: PredictorConfig, **context: Any) -> None:
        super().__init__(config, **context)
        model, device = self.model, self.device
        self.settings = resolve(
            config,
            device.type,
            self.loader_batch,
            int(getattr(model, "spatial_dims", 3)),
        )
        self.out_channels = int(model.out_channels)
        if config.output_dtype == "uint8" and not getattr(model, "is_segmentation", True):
            raise ConfigError(
                "predictor.output_dtype: uint8 stores probabilities in [0, 1] as 0..255, but "
                "the model is a regression model (is_segmentation: false) whose outputs are "
                "not probabilities. Use output_dtype float32 or float16."
            )
        if config.prediction_channel is not None and config.prediction_channel >= self.out_channels:
            raise ConfigError(
                f"predictor.prediction_channel: {config.prediction_channel} does not exist; the "
                f"model has out_channels {self.out_channels} (channels 0..{self.out_channels - 1})."
            )
        if self.postprocessor is not None and config.output_dataset == "segmentation":
            raise ConfigError(
                "predictor.output_dataset is 'segmentation', the dataset the postprocessor "
                "writes; name the predictions differently (e.g. output_dataset: predictions)."
            )
        check_pyramid(config.output_format, config.pyramid_levels)
        self.forward = PatchForward(
            model,
            device,
            amp=self.settings.amp,
            tta=config.tta,
            channels_last=self.settings.channels_last,
            compile=config.compile is True,  # auto: decided per volume (TileChoice)
            net=backend_forward(config.backend, model, device, model_section=self._model_section()),
        )
        announce(self.forward.precision)
        self._forward_mark = 0.0  # forward.seconds when this volume's patches began
        self._plan: TilePlan | None = None  # the plan of the volume being predicted
        self._plans: dict[tuple[int, int, int] | None, TilePlan] = {}

    def _model_section(self) -> dict[str, Any] | None:
        """The experiment's ``model`` section, part of a converted model's cache key."""
        section = getattr(self.experiment, "model", None)
        return dict(section) if section is not None else None

    # -- running ------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 1 if self.config.prediction_channel is not None else self.out_channels

    def output_file(self, dataset: Any) -> Path:
        return self._output_for(dataset.file_path)

    def _output_for(self, input_path: str) -> Path:
        """``<stem>_predictions`` + the output format's suffix."""
        return output_file(input_path, self.output_dir, self.config.output_format)

    def planned_outputs(self, input_path: str) -> list[Path]:
        """Every file predicting ``input_path`` writes (checked for collisions up front)."""
        path = self._output_for(input_path)
        if (
            self.postprocessor is None
            or not formats.for_output(self.config.output_format).single_array
        ):
            return [path]
        return [path, path.with_name(f"{path.stem}_segmentation{path.suffix}")]

    def output_layout(self, volume: Sequence[int]) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """(shape, dtype) of the output array of a (Z,Y,X) volume written block by block:
        uint16 labels with ``save_segmentation``, else one channel per class."""
        spatial = tuple(int(v) for v in volume)
        if self.config.save_segmentation:
            return spatial, np.dtype(np.uint16)
        return (self.channels, *spatial), np.dtype(self.config.output_dtype)

    # -- block by block on Dask (unet_core.interfaces.BlockwisePredictor) --------------------
    @property
    def output_format(self) -> str:
        return self.config.output_format

    def block_output(self, volume: tuple[int, ...], source: str) -> BlockOutput:
        cfg = self.config
        shape, dtype = self.output_layout(volume)
        quantized = cfg.output_dtype == "uint8" and not cfg.save_segmentation
        return BlockOutput(
            name=cfg.output_dataset,
            shape=shape,
            dtype=dtype,
            chunks=tuple(cfg.chunks) if cfg.chunks else None,
            compression=cfg.compression,
            attrs=self.array_attrs(dtype, cfg.output_dataset, source),
            blending=self.settings.blending,
            scale=1.0 / 255.0 if quantized else 1.0,
            labels=cfg.save_segmentation,
            pyramid_levels=cfg.pyramid_levels,
        )

    def stored(self, values: np.ndarray) -> np.ndarray:
        if self.config.save_segmentation:
            return segment(values)
        return quantize(values, self.config.output_dtype)

    def on_worker(self) -> None:
        self.num_workers = 0  # Dask workers are daemons: no loader subprocesses

    def array_attrs(self, dtype: Any, name: str, source: str) -> dict[str, Any]:
        """Attributes of an output array: how to read its values back (``quantization``)
        and which input it was predicted from (``unet_source``)."""
        return {**output_attrs(dtype, name, self.config), **source_attrs(source)}

    def output_bytes(self, volume: Sequence[int]) -> int:
        """Uncompressed size of the output of a (Z,Y,X) volume: the free space it needs."""
        voxels = int(np.prod([int(v) for v in volume]))
        if self.config.save_segmentation:
            size = voxels * 2
        else:
            size = voxels * self.channels * np.dtype(self.config.output_dtype).itemsize
        return size + (voxels * 4 if self.postprocessor is not None else 0)

    def _check_space(self, path: Path, volume: Sequence[int]) -> int:
        needed = self.output_bytes(volume)
        check_space(path, needed, compressed=self.config.compression not in ("none", 0))
        return needed

    def batch_for(self, dataset: Any) -> int:
        """Patches per forward: the configured number, or the automatic one for small patches
        (batching big ones gains nothing and multiplies the memory of a forward)."""
        if self.config.batch_size is not None:
            return self.config.batch_size
        if self._planned and self._plan is not None:
            return self._plan.batch
        first = spatial(dataset.raw_slices[0]) if len(dataset.raw_slices) else ()
        voxels = 1
        for s, h in zip(first, dataset.halo_shape):
            voxels *= s.stop - s.start + 2 * int(h)
        return self.settings.batch_size if voxels <= AUTO_BATCH_MAX_VOXELS else self.loader_batch

    def _loader(self, dataset: Any) -> Any:
        """Batches of the dataset: read ahead by a thread (fast mode, or no loader workers:
        no process start-up), else by the configured loader worker processes."""
        from torch.utils.data import DataLoader

        collate = getattr(dataset, "collate_fn", None)
        workers = 0 if self._planned else self.num_workers
        loader = DataLoader(
            dataset,
            batch_size=self.batch_for(dataset),
            shuffle=False,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
        )
        return prefetched(loader) if workers == 0 else loader

    def patches(self, dataset: Any) -> Iterator[tuple[np.ndarray, Index]]:
        """(probabilities (C,*patch), output index) of every patch, halo cropped."""
        self._forward_mark = self.forward.seconds  # this dataset's forwards: _stats
        return forward_patches(
            self.forward,
            self._loader(dataset),
            tuple(int(h) for h in dataset.halo_shape),
            out_channels=self.out_channels,
            channel=self.config.prediction_channel,
            where=str(dataset.file_path),
        )

    def _check(self, dataset: Any) -> tuple[int, ...]:
        if not hasattr(dataset, "raw_slices") or not hasattr(dataset, "volume_shape"):
            raise ConfigError(
                f"{type(self).__name__} predicts patch datasets (StandardHDF5Dataset, "
                f"LazyHDF5Dataset), but loaders.dataset gives {type(dataset).__name__}, which "
                "has no patch grid. For DSB2018Dataset use predictor: {name: DSB2018Predictor}."
            )
        volume = tuple(int(v) for v in dataset.volume_shape)
        check_halo(tuple(dataset.halo_shape), volume, str(dataset.file_path))
        return volume

    def _stats(self, dataset: Any, volume: tuple[int, ...], seconds: float) -> dict[str, Any]:
        indices = [spatial(s) for s in dataset.raw_slices]
        return {
            "patches": len(indices),
            "seconds": seconds,
            # host seconds in the model's forwards (on a GPU: queueing them); seconds /
            # forward_seconds - 1 is the predictor's own cost, measured in the same run
            "forward_seconds": self.forward.seconds - self._forward_mark,
            "voxels_per_second": float(np.prod(volume)) / max(seconds, 1e-9),
            "redundancy": redundancy(indices, volume, tuple(dataset.halo_shape)),
            "precision": self.forward.precision.mode,
            "tile": [s.stop - s.start for s in indices[0]] if indices else [],
        }

    def __call__(self, dataset: Any) -> list[Written]:
        """Predict ``dataset`` and write its output file; returns what was written."""
        volume = self._check(dataset)
        path = self.output_file(dataset)
        check_writable(path, self.overwrite)
        needed = self._check_space(path, volume)
        log.info("Predicting %s -> %s", dataset.file_path, path)
        start = time.perf_counter()
        values = blend_in_memory(
            self.patches(dataset), self.channels, volume, self.settings.blending
        )
        stats = self._stats(dataset, volume, time.perf_counter() - start)
        check_output(values, self._checked_dtype, str(dataset.file_path))
        arrays = self._arrays(values)
        metrics = self._score(dataset, arrays, values)
        info = input_info(dataset)
        source = str(dataset.file_path)
        with open_output(
            path, self.config.output_format, overwrite=self.overwrite, needed=needed
        ) as out:
            for name, array in arrays.items():
                self._write(out, name, array, info, source)
            self.add_pyramids(out, list(arrays))
        return [Written(str(path), list(arrays), metrics, stats, source)]

    def add_pyramids(self, out: VolumeWriter, names: list[str], map_boxes: Any = None) -> None:
        """``pyramid_levels`` coarser levels of every output array: nearest voxel for labels
        (the segmentation, or predictions with save_segmentation), mean for probabilities."""
        for name in names:
            labels = name == "segmentation" or self.config.save_segmentation
            add_pyramid(out, name, self.config.pyramid_levels, labels=labels, map_boxes=map_boxes)

    def _write(
        self, out: VolumeWriter, name: str, array: np.ndarray, info: VolumeInfo, source: str
    ) -> None:
        out.write(
            name,
            array,
            chunks=self.config.chunks,
            compression=self.config.compression,
            info=info.with_axes(array.ndim),
            attrs=self.array_attrs(array.dtype, name, source),
        )

    @property
    def _checked_dtype(self) -> str | None:
        """The output dtype whose range the values must fit (None: labels are written)."""
        return None if self.config.save_segmentation else self.config.output_dtype

    def _arrays(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Output datasets from the blended probabilities."""
        out: dict[str, np.ndarray] = {}
        if self.config.save_segmentation:
            out[self.config.output_dataset] = segment(values)
        else:
            out[self.config.output_dataset] = quantize(values, self.config.output_dtype)
        if self.postprocessor is not None:
            labels = self.postprocessor(values)
            out["segmentation"] = labels.astype(segmentation_dtype(int(labels.max(initial=0))))
        return out

    def _score(
        self, dataset: Any, arrays: dict[str, np.ndarray], values: np.ndarray
    ) -> dict[str, Any] | None:
        metric = self.config.performance_metric
        if metric is None:
            return None
        gt = read_gt(dataset.file_path, self.config.gt_internal_path)
        counter = ScoreCounter(metric, self.channels, where=str(dataset.file_path))
        labels = segment(values)
        masks = values > 0.5 if gt.ndim == 4 else None
        counter.update(labels, gt, masks)
        result = counter.result()
        log.info("%s of %s: %s", metric, dataset.file_path, result["per_class"])
        return result


def read_gt(file_path: str, name: str | None) -> np.ndarray:
    """The whole ground-truth volume of an input file."""
    from unet_core.io import Source

    with Source(str(file_path)) as src:
        return src.volume(str(name), key="predictor.gt_internal_path").read()


def input_info(dataset: Any) -> VolumeInfo:
    """Voxel size and axes of the dataset's raw input, to carry into its outputs."""
    from unet_core.io import Source

    raw = getattr(dataset, "names", {}).get("raw") or "raw"
    raw = raw if isinstance(raw, str) else raw[0]
    try:
        with Source(str(dataset.file_path), raw_name=raw) as src:
            return src.info(raw)
    except Exception:  # noqa: BLE001 - metadata is a courtesy, never a reason to fail
        return VolumeInfo()


def output_attrs(dtype: Any, name: str, config: PredictorConfig) -> dict[str, Any]:
    """Attributes that say how to read an output back (uint8 probabilities are quantized)."""
    if np.dtype(dtype) == np.uint8 and not config.save_segmentation and name != "segmentation":
        return {"quantization": "probability = value / 255"}
    return {}


__all__ = ["StandardPredictor", "check_halo", "input_info", "output_attrs", "read_gt", "spatial"]
