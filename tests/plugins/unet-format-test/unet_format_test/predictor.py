"""A predictor built on the public API only: predict_array over the whole raw volume."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from unet_core.interfaces import ComponentConfig
from unet_core.io import Source
from unet_core.prediction_api import Written, open_output, output_file, predict_array


class WholeArrayConfig(ComponentConfig):
    output_format: str = Field("npy", description="Volume format of the output.")
    mode: str = Field("reference", description="reference or fast.")


class WholeArrayPredictor:
    """Reads each test file's raw array through its format and predicts it with
    ``predict_array`` (patch/stride/halo of the test slice builder), unnormalised."""

    Config = WholeArrayConfig

    @classmethod
    def from_config(cls, config: WholeArrayConfig, **context: Any) -> WholeArrayPredictor:
        return cls(config, **context)

    def __init__(self, config: WholeArrayConfig, **context: Any) -> None:
        self.config = config
        self.model = context["model"]
        self.device = context["device"]
        self.output_dir = context.get("output_dir")
        self.overwrite = bool(context.get("overwrite"))

    def __call__(self, dataset: Any) -> list[Written]:
        raw_name = dataset.names["raw"]
        path = output_file(dataset.file_path, self.output_dir, self.config.output_format)
        with Source(dataset.file_path, raw_name=raw_name) as src:
            raw = src.volume(raw_name, key="raw_internal_path")
            probs = predict_array(
                self.model,
                raw,
                patch=dataset.patch_shape,
                stride=dataset.slice_builder.stride_shape,
                halo=dataset.halo_shape,
                device=self.device,
                mode=self.config.mode,
            )
        with open_output(path, self.config.output_format, overwrite=self.overwrite) as out:
            out.write("predictions", probs)
        return [Written(str(path), ["predictions"], source=str(dataset.file_path))]
