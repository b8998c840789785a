"""A third-party predictor for the tests of the block-wise predictor contract: not derived
from any built-in, it predicts sigmoid(raw) of each patch (one channel). Importable by Dask
workers (tests/ is on their sys.path), as a pip-installed plugin would be."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from unet_core.interfaces import BlockOutput, ComponentConfig
from unet_core.prediction_api import blend_in_memory, open_output, output_file


class SigmoidConfig(ComponentConfig):
    output_format: str = "zarr"
    #: Memory (MB) each patch holds for a second: a block that needs more than a worker has.
    hog_mb: int = Field(0, ge=0)


class SigmoidPredictor:
    """Block-wise on Dask by its declaration and the BlockwisePredictor members."""

    Config = SigmoidConfig
    blockwise = True
    channels = 1

    def __init__(self, config: SigmoidConfig, **context: Any) -> None:
        self.config = config
        self.output_format = config.output_format
        self.output_dir = context.get("output_dir")
        self.postprocessor = context.get("postprocessor")
        self.overwrite = bool(context.get("overwrite"))
        self.on_workers = 0

    @classmethod
    def from_config(cls, config: SigmoidConfig, **context: Any) -> SigmoidPredictor:
        return cls(config, **context)

    def output_file(self, dataset: Any) -> Path:
        return output_file(dataset.file_path, self.output_dir, self.output_format)

    def block_output(self, volume: tuple[int, ...], source: str) -> BlockOutput:
        return BlockOutput("predictions", (1, *volume), np.dtype("float32"), chunks=(4, 8, 8))

    def patches(self, dataset: Any) -> Any:
        halo = tuple(int(h) for h in dataset.halo_shape)
        crop = tuple(slice(h, -h if h else None) for h in halo)
        for i in range(len(dataset)):
            raw, index = dataset[i]
            if self.config.hog_mb:
                hog = np.ones(self.config.hog_mb * 2**20 // 8)
                time.sleep(2.0)
                del hog
            values = 1.0 / (1.0 + np.exp(-np.asarray(raw, dtype=np.float32)[0][crop]))
            yield values[None], tuple(index)[-3:]

    def stored(self, values: np.ndarray) -> np.ndarray:
        return values.astype(np.float32)

    def on_worker(self) -> None:
        self.on_workers += 1

    def __call__(self, dataset: Any) -> Any:
        volume = tuple(int(v) for v in dataset.volume_shape)
        values = blend_in_memory(self.patches(dataset), 1, volume, "overwrite")
        with open_output(self.output_file(dataset), self.output_format) as out:
            out.write("predictions", values, chunks=(4, 8, 8))
        return []


class WholeVolumePredictor(SigmoidPredictor):
    """The same predictions, but it does not declare ``blockwise``."""

    blockwise = False
