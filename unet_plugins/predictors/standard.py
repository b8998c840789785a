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

from unet_core.engine.blending import Index, VolumeAccumulator, redundancy, stride_for_overlap
from unet_core.engine.inference import PatchForward
from unet_core.engine.prediction_output import (
    Written,
    atomic_output,
    check_writable,
    h5_chunks,
    h5_compression,
    output_path,
    quantize,
    segmentation_dtype,
)
from unet_core.engine.prediction_scores import ScoreCounter, segment
from unet_core.errors import ConfigError, DataError
from unet_core.io.h5write import write_array
from unet_plugins.predictors.base import PredictorBase
from unet_plugins.predictors.settings import (
    PredictorConfig,
    fast_max_tile,
    fit_tiles,
    resolve,
)

log = logging.getLogger(__name__)

#: Automatic batching (CPU default, fast mode) only for patches up to this size (with halo).
AUTO_BATCH_MAX_VOXELS = 96**3


def spatial(index: Sequence[slice]) -> Index:
    """The last three (spatial) slices of a dataset index."""
    return tuple(index)[-3:]


def check_halo(halo: Sequence[int], volume_shape: Sequence[int], where: str) -> None:
    """Mirror padding needs a halo smaller than the volume on every axis."""
    bad = [
        (axis, h, n) for axis, h, n in zip("ZYX", halo, volume_shape) if h < 0 or (h > 0 and h >= n)
    ]
    if bad:
        axis, h, n = bad[0]
        raise DataError(
            f"loaders.test.slice_builder.halo_shape {list(halo)} is too big for {where}, whose "
            f"(Z,Y,X) shape is {tuple(volume_shape)}: the halo is mirrored from inside the "
            f"volume, so each entry must be smaller than the volume along its axis ({axis}: "
            f"{h} >= {n}), and 0 along z for 2D data. Reduce halo_shape."
        )


class StandardPredictor(PredictorBase):
    """Predict a test dataset and keep the output volume in memory (the reference's default)."""

    Config = PredictorConfig
    streaming = False
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
        self.forward = PatchForward(
            model,
            device,
            amp=config.amp,
            tta=config.tta,
            channels_last=self.settings.channels_last,
            compile=config.compile,
        )

    # -- what the engine asks before building the dataset -----------------------------------
    @property
    def retiles(self) -> bool:
        """Whether tiles are chosen here rather than by loaders.test.slice_builder."""
        return self.settings.tile_shape is not None

    def slice_builder_overrides(self, volume_shape: Sequence[int]) -> dict[str, Any] | None:
        """Patch/stride/halo for this volume when tiles are chosen here (``fast``/tile_shape)."""
        s = self.settings
        if s.tile_shape is None:
            return None
        volume = tuple(int(v) for v in volume_shape)
        if self.config.tile_shape is None:  # fast: the fewest tiles that fit, shrunk evenly
            tile, stride = fit_tiles(
                volume, fast_max_tile(self.device.type, volume), s.tile_overlap
            )
        else:
            z, y, x = (min(t, v) for t, v in zip(s.tile_shape, volume[-3:]))
            tile = (z, y, x)
            stride = stride_for_overlap(tile, s.tile_overlap)  # type: ignore[assignment]
        halo = tuple(0 if t == 1 else h for t, h in zip(tile, s.tile_halo))
        return {
            "patch_shape": tuple(tile),
            "stride_shape": tuple(stride),
            "halo_shape": tuple(halo),
            "skip_shape_check": True,
        }

    # -- running ------------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return 1 if self.config.prediction_channel is not None else self.out_channels

    def output_file(self, dataset: Any) -> Path:
        ext = ".tif" if self.config.output_format == "tiff" else ".h5"
        return output_path(dataset.file_path, self.output_dir, extension=ext)

    def batch_for(self, dataset: Any) -> int:
        """Patches per forward: the configured number, or the automatic one for small patches
        (batching big ones gains nothing and multiplies the memory of a forward)."""
        if self.config.batch_size is not None:
            return self.config.batch_size
        first = spatial(dataset.raw_slices[0]) if len(dataset.raw_slices) else ()
        voxels = 1
        for s, h in zip(first, dataset.halo_shape):
            voxels *= s.stop - s.start + 2 * int(h)
        return self.settings.batch_size if voxels <= AUTO_BATCH_MAX_VOXELS else self.loader_batch

    def _loader(self, dataset: Any) -> Any:
        from torch.utils.data import DataLoader

        collate = getattr(dataset, "collate_fn", None)
        return DataLoader(
            dataset,
            batch_size=self.batch_for(dataset),
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
        )

    def patches(self, dataset: Any) -> Iterator[tuple[np.ndarray, Index]]:
        """(probabilities (C,*patch), output index) of every patch, halo cropped."""
        halo = tuple(int(h) for h in dataset.halo_shape)
        crop = tuple(slice(h, -h if h else None) for h in halo)
        channel = self.config.prediction_channel
        for batch, indices in self._loader(dataset):
            probs = self.forward(batch)
            probs = probs[(slice(None), slice(None), *crop)]
            if channel is not None:
                probs = probs[:, channel : channel + 1]
            elif probs.shape[1] != self.out_channels:
                raise ConfigError(
                    f"The model returned {probs.shape[1]} channels but model.out_channels is "
                    f"{self.out_channels}; fix model.out_channels."
                )
            for prob, index in zip(probs, indices):
                index = spatial(index)
                extent = tuple(s.stop - s.start for s in index)
                if prob.shape[1:] != extent:
                    raise DataError(
                        f"The model's output patch {prob.shape[1:]} (after cropping the halo "
                        f"{list(halo)}) does not match the input patch {extent} of "
                        f"{dataset.file_path}; the model must keep the spatial size (e.g. "
                        "conv_padding: 1)."
                    )
                yield prob, index

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
            "voxels_per_second": float(np.prod(volume)) / max(seconds, 1e-9),
            "redundancy": redundancy(indices, volume, tuple(dataset.halo_shape)),
        }

    def __call__(self, dataset: Any) -> list[Written]:
        """Predict ``dataset`` and write its output file; returns what was written."""
        volume = self._check(dataset)
        path = self.output_file(dataset)
        check_writable(path, self.overwrite)
        log.info("Predicting %s -> %s", dataset.file_path, path)
        start = time.perf_counter()
        acc = VolumeAccumulator(self.channels, volume, self.settings.blending)  # type: ignore[arg-type]
        for prob, index in self.patches(dataset):
            acc.add(prob, index)
        values = acc.result()
        stats = self._stats(dataset, volume, time.perf_counter() - start)
        arrays = self._arrays(values)
        metrics = self._score(dataset, arrays, values)
        with atomic_output(path, self.overwrite) as tmp:
            if self.config.output_format == "tiff":
                names = _write_tiffs(tmp, path, arrays, self.overwrite)
            else:
                names = self._write_h5(tmp, arrays)
        return [Written(str(path), names, metrics, stats, str(dataset.file_path))]

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

    def _write_h5(self, tmp: Path, arrays: dict[str, np.ndarray]) -> list[str]:
        import h5py

        comp = h5_compression(self.config.compression)
        with h5py.File(tmp, "w") as f:
            for name, array in arrays.items():
                chunks = h5_chunks(array.shape, self.config.chunks, default=None)
                ds = write_array(f, name, array, chunks=chunks, compression=comp)
                describe_dataset(ds, name, self.config)
        return list(arrays)

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
    from unet_core.io.volume import Source

    with Source(str(file_path)) as src:
        return src.volume(str(name), key="predictor.gt_internal_path").read()


def describe_dataset(ds: Any, name: str, config: PredictorConfig) -> None:
    if ds.dtype == np.uint8 and not config.save_segmentation:
        ds.attrs["quantization"] = "probability = value / 255"


def _write_tiffs(
    tmp: Path, path: Path, arrays: dict[str, np.ndarray], overwrite: bool
) -> list[str]:
    """First array at ``path`` (via ``tmp``); others beside it as ``<stem>_<name>.tif``."""
    import tifffile

    names = list(arrays)
    first, *rest = names
    for name in rest:
        side = path.with_name(f"{path.stem}_{name}{path.suffix}")
        with atomic_output(side, overwrite) as side_tmp:
            tifffile.imwrite(side_tmp, arrays[name], compression="zlib")
    tifffile.imwrite(tmp, arrays[first], compression="zlib")
    return names


__all__ = ["StandardPredictor", "check_halo", "describe_dataset", "read_gt", "spatial"]
