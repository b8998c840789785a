"""DSB2018Predictor: whole 2D images in, one ``<stem>_predictions.h5`` per image out (or the
suffix of ``output_format``).

The reference's version cannot run (its constructor does not match how predictors are built,
and it ships CUDA tensors to a process pool; REFERENCE.md §12.20). This one does what it was
meant to: per image, ``predictions`` (the probability map, singleton axes squeezed) and, with
``save_segmentation``, ``segmentation`` = connected components of ``p > pmaps_threshold``
(uint16) — or the configured postprocessor's labels.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from pydantic import AliasChoices, Field, field_validator

from unet_core.errors import ConfigError, DataError
from unet_core.formats import output_format_name
from unet_core.interfaces import ComponentConfig
from unet_core.prediction_api import (
    PatchForward,
    Written,
    check_output,
    check_writable,
    open_output,
    output_file,
    quantize,
    segmentation_dtype,
    source_attrs,
)
from unet_plugins.predictors.base import PredictorBase

log = logging.getLogger(__name__)


class DSBConfig(ComponentConfig):
    """The reference's DSB2018Predictor keys plus the inference options that apply."""

    save_segmentation: bool = Field(
        True, description="Also write `segmentation`: labels of p > pmaps_threshold."
    )
    pmaps_threshold: float = Field(
        0.5,
        validation_alias=AliasChoices("pmaps_threshold", "pmaps_thershold"),
        description="Foreground threshold of the segmentation (the reference's misspelled "
        "`pmaps_thershold` is accepted too).",
    )
    prediction_channel: int | None = Field(
        None, ge=0, description="Channel segmented (default 0) and, if set, the only one saved."
    )
    output_dataset: str = Field("predictions", description="Dataset of the probability map.")
    performance_metric: str | None = Field(
        None, description="Accepted for compatibility; no effect (use `unet evaluate`)."
    )
    gt_internal_path: str | None = Field(None, description="Accepted for compatibility; no effect.")
    tta: str = Field("none", description="none, flips or flips_rot90 (in-plane).")
    amp: str = Field("none", description="Autocast: none, bf16 or fp16 (CUDA).")
    channels_last: bool = Field(False, description="channels_last memory format (2D).")
    output_dtype: str = Field("float32", description="float32, float16 or uint8 (round(255 p)).")
    compression: str | int = Field("gzip", description="gzip, a gzip level, lzf or none.")
    overwrite: bool = Field(False, description="Replace existing output files.")
    output_format: str = Field(
        "hdf5", description="Volume format of the outputs (any installed: hdf5, tiff, ...)."
    )

    _format = field_validator("output_format")(output_format_name)


class DSB2018Predictor(PredictorBase):
    """Predict every image of a DSB2018Dataset (test phase) and write one file per image."""

    Config = DSBConfig

    def __init__(self, config: DSBConfig, **context: Any) -> None:
        if config.output_dtype not in ("float32", "float16", "uint8"):
            raise ConfigError(
                f"predictor.output_dtype: {config.output_dtype!r} is not one of float32, "
                "float16, uint8."
            )
        super().__init__(config, **context)
        self._planned: dict[str, str] = {}  # output -> image, over the whole run
        self.forward = PatchForward(
            self.model,
            self.device,
            amp=config.amp,
            tta=config.tta,
            channels_last=config.channels_last,
        )

    def _loader(self, dataset: Any) -> Any:
        from torch.utils.data import DataLoader

        return DataLoader(
            dataset,
            batch_size=self.loader_batch,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=getattr(dataset, "collate_fn", None),
        )

    def __call__(self, dataset: Any) -> list[Written]:
        """One output file per image of ``dataset``; returns them in the dataset's order."""
        for image in getattr(dataset, "paths", []):
            path = self._path(str(image))
            first = self._planned.setdefault(str(path), str(image))
            if first != str(image):
                raise DataError(
                    f"Two images would write the same output {path}: {first} and {image} "
                    "(outputs are named after the image's name). Nothing of this folder was "
                    "predicted; --overwrite does not change this. Predict the folders in "
                    "separate runs with a different loaders.output_dir for each."
                )
            check_writable(path, self.overwrite)
        written = []
        for batch, paths in self._loader(dataset):
            if batch.dim() == 4:  # (N,C,Y,X) without expand_dims: add the singleton z
                batch = batch.unsqueeze(-3)
            if batch.dim() != 5:
                raise DataError(
                    f"DSB2018Predictor got images of shape {tuple(batch.shape[1:])}; expected "
                    "(C,1,Y,X) (set loaders.expand_dims: true and ToTensor expand_dims)."
                )
            probs = self.forward(batch)
            for prob, image in zip(probs, paths):
                written.append(self._write(prob, str(image)))
        return written

    def _path(self, image: str) -> Any:
        return output_file(image, self.output_dir, self.config.output_format)

    def _write(self, prob: np.ndarray, image: str) -> Written:
        """``prob`` (C,1,Y,X) of one image -> its output file."""
        cfg = self.config
        channel = cfg.prediction_channel or 0
        if channel >= prob.shape[0]:
            raise ConfigError(
                f"predictor.prediction_channel: {channel} does not exist; the model has "
                f"{prob.shape[0]} output channel(s)."
            )
        saved = prob[channel : channel + 1] if cfg.prediction_channel is not None else prob
        check_output(prob, cfg.output_dtype, image)
        arrays = {cfg.output_dataset: quantize(np.squeeze(saved), cfg.output_dtype)}
        if cfg.save_segmentation or self.postprocessor is not None:
            arrays["segmentation"] = self._segment(prob, channel)
        path = self._path(image)
        with open_output(path, cfg.output_format, overwrite=self.overwrite) as out:
            for name, array in arrays.items():
                out.write(name, array, compression=cfg.compression, attrs=source_attrs(image))
        return Written(str(path), list(arrays), source=image)

    def _segment(self, prob: np.ndarray, channel: int) -> np.ndarray:
        from skimage.measure import label

        if self.postprocessor is not None:
            labels = np.squeeze(self.postprocessor(prob))
        else:
            labels = label(np.squeeze(prob[channel]) > self.config.pmaps_threshold)
        return labels.astype(segmentation_dtype(int(labels.max(initial=0))))
