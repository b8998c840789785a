"""What the backends that run an exported graph share (onnxruntime, openvino).

Each exports the network to ONNX once, on the first batch of the run (a shape the network
surely accepts; batch and spatial axes stay dynamic), converts it for its runtime, keeps the
result in the converted-model cache under (weights digest, backend, version, precision,
opset) and then runs every batch on float32 numpy arrays. A missing runtime package, a
network the exporter cannot convert and a GPU device are one-paragraph errors.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from unet_core.backend_api import OPSET, cached_conversion
from unet_core.errors import ConfigError
from unet_core.interfaces import ComponentConfig, InferenceBackend

log = logging.getLogger(__name__)

#: A batch in, the network's output out (float32 numpy arrays).
Runner = Callable[[np.ndarray], np.ndarray]
Precision = Literal["auto", "bf16", "f32"]


class GraphConfig(ComponentConfig):
    """Keys of a backend that runs an exported graph on the CPU."""

    precision: Precision = Field(
        "auto",
        description="Arithmetic of the forward pass: bf16 where the CPU has native bf16 "
        "(auto), or bf16/f32 explicitly. Inputs, outputs and blending stay float32.",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads of the runtime; default torch's thread count."
    )
    cache_dir: str | None = Field(
        None,
        description="Folder of the converted-model cache; default the user cache "
        "(~/.cache/unet-core/converted-models on Linux).",
    )


def import_runtime(module: str, backend: str, extra: str) -> Any:
    """The runtime package, or the paragraph that says which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"predictor.backend: {backend} needs the {module} package, which is not "
            f"installed. Install it with `pip install 'unet-core[{extra}]'` (in a checkout: "
            f"`pip install -c constraints.txt -e '.[{extra}]'`), or use predictor.backend: "
            "torch."
        ) from None


@contextlib.contextmanager
def quiet_exporter() -> Iterator[None]:
    """Hide the exporter's chatter (skipped torchvision ops, deprecations of its internals):
    none of it is the user's news; its errors still arrive as exceptions."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class FirstBatchConversion:
    """``forward(x) -> y`` that converts the network on its first batch, then runs it."""

    def __init__(self, convert: Callable[[np.ndarray], Runner]) -> None:
        self._convert = convert
        self._run: Runner | None = None

    def __call__(self, x: Any) -> Any:
        import torch

        batch = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        if self._run is None:
            self._run = self._convert(batch)
        return torch.from_numpy(self._run(batch))


class GraphBackend(InferenceBackend):
    """Base of the graph backends: subclasses name their runtime and say how to convert and
    run; the cache, the first-batch conversion and the messages are shared."""

    devices: ClassVar[tuple[str, ...] | None] = ("cpu",)
    #: the ``predictor.backend`` name, the runtime's module and the extra that installs it
    name: ClassVar[str]
    module: ClassVar[str]
    extra: ClassVar[str]

    def __init__(self, config: GraphConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: GraphConfig, **_: Any) -> GraphBackend:
        return cls(config)

    def prepare(
        self, model: Any, device: Any, model_key: Callable[[], str]
    ) -> Callable[[Any], Any]:
        import torch

        runtime = import_runtime(self.module, self.name, self.extra)
        precision = self.precision(runtime)
        threads = self.config.threads or torch.get_num_threads()
        version = self.version(runtime)
        log.info(
            "Inference backend %s %s: precision %s, %d threads", self.name, version, precision,
            threads,
        )  # fmt: skip
        key = {
            "weights": model_key(),
            "version": version,
            "precision": precision,
            "opset": OPSET,
            "torch": torch.__version__,
        }

        def convert(batch: np.ndarray) -> Runner:
            example = np.ascontiguousarray(batch[:1])

            def make(folder: Path) -> None:
                with quiet_exporter():
                    self.convert(model, example, folder, runtime, precision)

            entry = cached_conversion(self.name, key, make, cache_dir=self.config.cache_dir)
            return self.runner(entry.path, runtime, precision, threads)

        return FirstBatchConversion(convert)

    @property
    def export_advice(self) -> str:
        """The way out of a network the exporter cannot convert."""
        return f"Predict this model with predictor.backend: torch instead of {self.name}."

    # -- what each runtime says --------------------------------------------------------------
    def version(self, runtime: Any) -> str:
        return str(runtime.__version__)

    def precision(self, runtime: Any) -> str:
        """The precision that runs: ``config.precision`` with ``auto`` resolved."""
        raise NotImplementedError

    def convert(
        self, model: Any, example: np.ndarray, folder: Path, runtime: Any, precision: str
    ) -> None:
        """Write the converted network into ``folder`` (a new, empty cache entry)."""
        raise NotImplementedError

    def runner(self, folder: Path, runtime: Any, precision: str, threads: int) -> Runner:
        """Load the converted network of ``folder`` for repeated runs."""
        raise NotImplementedError
