"""OpenVINO as an inference backend: the exported graph compiled for the CPU.

Optional: ``pip install 'unet-core[openvino]'``. ``precision: auto`` asks OpenVINO for bf16
(``INFERENCE_PRECISION_HINT``) where the CPU has native bf16 (AMX or AVX-512 BF16, which
OpenVINO reports as the ``BF16`` capability) and for f32 elsewhere; f32 is asked explicitly,
since OpenVINO's own default on such CPUs is bf16.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.backend_api import derived_cache, export_onnx
from unet_plugins.backends.graph import GraphBackend, GraphConfig, Runner

log = logging.getLogger(__name__)

IR = "model.xml"  # with its weights in model.bin
ONNX = "model.onnx"  # the exported graph, converted to the IR and dropped
#: Compiled shapes kept at once; beyond it they are compiled again as needed.
MAX_SHAPES = 8


def cpu_has_bf16(capabilities: list[str] | tuple[str, ...]) -> bool:
    """Whether OpenVINO's CPU capabilities include native bf16."""
    return "BF16" in {str(c).upper() for c in capabilities}


def compiled_cache(folder: Path) -> Path:
    """Where OpenVINO keeps the compiled kernels of the converted model in ``folder``."""
    return derived_cache(folder, "openvino-compiled")


class OpenVINOConfig(GraphConfig):
    """precision auto: bf16 where the CPU has it, f32 elsewhere."""


class OpenVINOBackend(GraphBackend):
    """Run the exported graph with OpenVINO on the CPU (bf16 where the CPU has it)."""

    Config = OpenVINOConfig
    name = "openvino"
    module = "openvino"
    extra = "openvino"

    def version(self, runtime: Any) -> str:
        return str(runtime.get_version())

    def precision(self, runtime: Any) -> str:
        caps = runtime.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        native = cpu_has_bf16(caps)
        wanted = self.config.precision
        if wanted == "auto":
            return "bf16" if native else "f32"
        if wanted == "bf16" and not native:
            log.warning(
                "predictor.backend.precision: bf16, but this CPU has no native bf16 (OpenVINO "
                "reports %s); OpenVINO runs f32 instead.",
                ", ".join(map(str, caps)),
            )
            return "f32"
        return wanted

    def convert(
        self, model: Any, example: np.ndarray, folder: Path, runtime: Any, precision: str
    ) -> None:
        export_onnx(model, example, folder / ONNX, advice=self.export_advice)
        graph = runtime.convert_model(str(folder / ONNX))
        runtime.save_model(graph, str(folder / IR), compress_to_fp16=False)
        (folder / ONNX).unlink()

    def runner(self, folder: Path, runtime: Any, precision: str, threads: int) -> Runner:
        """One compiled model per input shape: OpenVINO's CPU kernels for a static shape are
        faster than its dynamic-shape path (~25 % for bf16 at 64^3, measured side by side),
        and a run sees one or two shapes (its tiles, a last smaller batch)."""
        core = runtime.Core()
        # OpenVINO's own cache of compiled kernels, beside the converted models: a later run
        # loads them instead of compiling (0.28 -> 0.07 s per shape for the benchmark UNet3D)
        kernels = compiled_cache(folder)
        try:
            kernels.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(kernels)})
        except OSError as exc:  # a read-only cache: compile every run, as without it
            log.debug("OpenVINO compiled-kernel cache off (%s): %s", kernels, exc)
        settings = {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        requests: dict[tuple[int, ...], Any] = {}

        def run(batch: np.ndarray) -> np.ndarray:
            request = requests.get(batch.shape)
            if request is None:
                if len(requests) >= MAX_SHAPES:  # many shapes (2D slices of many sizes...)
                    requests.clear()
                graph = core.read_model(str(folder / IR))
                graph.reshape(list(batch.shape))
                request = core.compile_model(graph, "CPU", settings).create_infer_request()
                requests[batch.shape] = request
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data)  # a copy: the buffer is reused

        return run
