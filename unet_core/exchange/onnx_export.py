"""ONNX export: dynamic batch and spatial axes, checked with onnxruntime before it is kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unet_core.errors import ExportError
from unet_core.exchange.parity import check_exported
from unet_core.io.atomic import atomic_output

if TYPE_CHECKING:
    import torch

#: Opset of the written graph: 21 has a native GroupNormalization (the decomposition of
#: older opsets differs from torch by ~3e-4 after a sigmoid); onnxruntime >= 1.18 reads it.
OPSET = 21
INPUT_NAME = "input"
OUTPUT_NAME = "output"


def _needs(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"ONNX export needs the {module} package, which is not installed. Install the "
            "optional extra with `pip install -c constraints.txt 'unet-core[export]'`."
        ) from None


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    """Run the graph in ``path`` on the CPU with onnxruntime."""
    ort = _needs("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {INPUT_NAME: x})[0])


#: The way out of a failed export, for ``unet export`` (backends pass their own).
EXPORT_ADVICE = "Export TorchScript instead (--format torchscript)."


def _write_graph(
    model: torch.nn.Module, x: np.ndarray, path: Path, advice: str = EXPORT_ADVICE
) -> None:
    import torch

    _needs("onnx")
    _needs("onnxscript")  # the dynamo exporter writes through it
    dynamic = {i: torch.export.Dim.DYNAMIC for i in (0, *range(2, x.ndim))}
    try:
        with torch.no_grad():
            torch.onnx.export(
                model,
                (torch.from_numpy(x),),
                str(path),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes=(dynamic,),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,  # one self-contained file, renamed atomically
                verbose=False,
            )
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the exporter's message is the paragraph's core
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"torch.onnx.export cannot convert {type(model).__name__}: {first}. {advice}"
        ) from None


def export_onnx(
    model: torch.nn.Module, x: np.ndarray, out: Path, *, advice: str | None = None
) -> float:
    """Write ``out`` if onnxruntime's output matches the network on ``x``; returns the max diff.

    ``advice`` replaces the way out named when the model cannot be exported faithfully.
    """
    _needs("onnxruntime")
    model.eval()
    with atomic_output(out) as tmp:
        _write_graph(model, x, tmp, advice or EXPORT_ADVICE)
        diff = check_exported(
            model, x, lambda a: run_onnx(tmp, a), what="ONNX graph", advice=advice
        )
    return diff
