"""ONNX Runtime as an inference backend: the exported graph on its CPU execution provider.

Optional: ``pip install 'unet-core[onnxruntime]'``. ONNX Runtime has no bf16 convolutions
on the CPU, so it runs float32; on this project's benchmark CPU it is slower than torch
(docs/performance.md), and is here for machines and models where it is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from unet_core.backend_api import INPUT_NAME, export_onnx
from unet_plugins.backends.graph import GraphBackend, GraphConfig, Runner

GRAPH = "model.onnx"


class ONNXRuntimeConfig(GraphConfig):
    """precision auto means f32 here (the CPU provider has no bf16 convolutions)."""

    precision: Literal["auto", "f32"] = Field(  # type: ignore[assignment]
        "auto", description="f32 (auto means f32: the CPU provider has no bf16 convolutions)."
    )

    @field_validator("precision", mode="before")
    @classmethod
    def _float32_only(cls, value: Any) -> Any:
        if value == "bf16":
            raise ValueError(
                "onnxruntime runs float32 on the CPU; for bf16 use predictor.backend: "
                "{name: openvino, precision: bf16} or the torch backend with amp: bf16"
            )
        return value


class ONNXRuntimeBackend(GraphBackend):
    """Run the exported ONNX graph with ONNX Runtime (CPU)."""

    Config = ONNXRuntimeConfig
    name = "onnxruntime"
    module = "onnxruntime"
    extra = "onnxruntime"

    def precision(self, runtime: Any) -> str:
        return "f32"

    def convert(
        self, model: Any, example: np.ndarray, folder: Path, runtime: Any, precision: str
    ) -> None:
        export_onnx(model, example, folder / GRAPH, advice=self.export_advice)

    def runner(self, folder: Path, runtime: Any, precision: str, threads: int) -> Runner:
        options = runtime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are not news
        session = runtime.InferenceSession(
            str(folder / GRAPH), options, providers=["CPUExecutionProvider"]
        )

        def run(batch: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {INPUT_NAME: batch})[0])

        return run
