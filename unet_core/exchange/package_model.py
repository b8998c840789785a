"""A bioimage.io package as the network of ``model_path``: native when possible, else TorchScript.

Native: the package's ``pytorch_state_dict`` names a model this installation has (same name in
the ``models`` registry, and the class's own module or the reference's ``pytorch3dunet``
package, as PlantSeg's zoo does): the model is built through the registry from the package's
kwargs and gets its weights strictly, so it is exactly a checkpoint-loaded model (fast paths,
``--resume``/fine-tuning). A package architecture given as a file is never executed. Otherwise
its TorchScript weights (or, without those, its ONNX weights through onnxruntime) run in the
same predictor. (Imported only when model_path is used,
so importing torch here costs ``unet --help`` nothing.)
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unet_core.errors import ConfigError, ModelPackageError
from unet_core.io.model_package import ModelPackage, is_model_package, open_package
from unet_core.io.package_weights import native_spec, package_state_dict

log = logging.getLogger(__name__)


def package_model_or_none(path: str | Path | None) -> Any:
    """The network of ``path`` if it is a model package, else None (a checkpoint)."""
    if path is None or not is_model_package(path):
        return None
    return load_package_model(path)


def load_package_model(path: str | Path) -> Any:
    """The package's network in eval mode, with its weights and its output steps
    (:mod:`unet_core.exchange.package_processing`); ModelPackageError if it cannot be."""
    from unet_core.exchange.package_processing import with_postprocessing

    package = open_package(path)
    return with_postprocessing(_network(package), package)


def _network(package: ModelPackage) -> Any:
    path = package.location
    dims = check_axes(package)
    spec = native_spec(package)
    if spec is not None:
        return _native(package, spec)
    entry = package.weights("torchscript")
    if entry is not None and entry.get("source"):
        return _scripted(package, entry, dims)
    entry = package.weights("onnx")
    if entry is not None and entry.get("source") and _has_onnxruntime():
        return _onnx(package, entry, dims)
    arch = package.architecture()
    what = f"architecture {arch.callable!r}" if arch else "no pytorch_state_dict architecture"
    formats = ", ".join(sorted(package.rdf.get("weights") or {})) or "none"
    raise ModelPackageError(
        f"The model package {str(path)!r} has {what} that unet-core does not provide, and no "
        f"TorchScript or ONNX weights to run instead (its weight formats: {formats}; ONNX needs "
        "onnxruntime). unet-core runs "
        "packages whose pytorch_state_dict architecture is one of its models (or "
        "pytorch-3dunet's of the same name), or that carry torchscript weights; export the "
        "model with TorchScript weights, or install the plugin that provides the architecture."
    )


def _native(package: ModelPackage, spec: dict[str, Any]) -> Any:
    from unet_core import registry
    from unet_core.engine.checkpoint import load_model_weights

    levels = spec.get("f_maps")
    if isinstance(levels, list) and spec.get("num_levels") not in (None, len(levels)):
        # packages exported before the model config said so paired a list f_maps with the
        # default num_levels
        spec = {**spec, "num_levels": len(levels)}
    try:
        model = registry.create("models", spec)
    except ConfigError as exc:
        raise ModelPackageError(
            f"The model package {str(package.location)!r} describes a {spec['name']} whose "
            f"kwargs this version cannot build: {exc.message} Export the package again with "
            "this version, or drop the unsupported kwargs from its rdf.yaml."
        ) from None
    load_model_weights(
        model, package_state_dict(package), model_config=spec, source=str(package.location)
    )
    model.eval()
    log.info("model_path is a bioimage.io package: native %s", spec["name"])
    return model


def _scripted(package: ModelPackage, entry: dict[str, Any], dims: int) -> Any:
    module = _loaded(
        package,
        entry,
        "TorchScript",
        lambda data: torch.jit.load(io.BytesIO(data), map_location="cpu"),  # type: ignore[no-untyped-call]
    )
    cin, cout = _channels(package, "inputs"), _channels(package, "outputs")
    return ScriptedNetwork(module, in_channels=cin, out_channels=cout, spatial_dims=dims)


def _loaded(package: ModelPackage, entry: dict[str, Any], kind: str, load: Any) -> Any:
    """``load(bytes)`` of a weights file, checked against its sha256; one paragraph if broken."""
    data = package.read(str(entry["source"]), sha256=entry.get("sha256"), what="weights file")
    try:
        return load(data)
    except Exception as exc:  # noqa: BLE001 - a broken file, told once
        first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        raise ModelPackageError(
            f"The {kind} weights {entry['source']!r} of {str(package.location)!r} cannot be "
            f"loaded: {first}."
        ) from None


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _onnx(package: ModelPackage, entry: dict[str, Any], dims: int) -> Any:
    import onnxruntime as ort

    session = _loaded(
        package,
        entry,
        "ONNX",
        lambda data: ort.InferenceSession(data, providers=["CPUExecutionProvider"]),
    )
    cin, cout = _channels(package, "inputs"), _channels(package, "outputs")
    return OnnxNetwork(session, in_channels=cin, out_channels=cout, spatial_dims=dims)


def _axes(tensor: dict[str, Any]) -> list[str]:
    """Axis types of a tensor: 0.5 lists of {type, id}, 0.4 strings such as 'bczyx'."""
    axes = tensor.get("axes")
    if isinstance(axes, str):
        return [{"b": "batch", "c": "channel"}.get(a, a) for a in axes]
    out = []
    for axis in axes or []:
        kind = axis.get("type")
        out.append(str(axis.get("id", kind)) if kind == "space" else str(kind))
    return out


def _channels(package: ModelPackage, io_key: str) -> int:
    tensor = (package.rdf.get(io_key) or [{}])[0]
    axes = tensor.get("axes")
    if isinstance(axes, list):
        for axis in axes:
            if axis.get("type") == "channel":
                return len(axis.get("channel_names") or []) or 1
    shape = tensor.get("shape")
    if not isinstance(axes, str) or "c" not in axes:
        return 1
    c = axes.index("c")
    if isinstance(shape, list):  # spec 0.4: a fixed shape
        return int(shape[c])
    if isinstance(shape, dict) and isinstance(shape.get("min"), list):  # 0.4: min + step
        return int(shape["min"][c])
    if isinstance(shape, dict) and "reference_tensor" in shape:  # 0.4: output from the input
        scale, offset = shape.get("scale") or [], shape.get("offset") or []
        base = _channels(package, "inputs")
        return int(round(base * float(scale[c]) + 2 * float(offset[c]))) if scale else base
    return 1


def check_axes(package: ModelPackage) -> int:
    """The number of spatial axes; ModelPackageError unless (batch, channel, [z,] y, x)."""
    inputs = package.rdf.get("inputs") or []
    outputs = package.rdf.get("outputs") or []
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelPackageError(
            f"The model package {str(package.location)!r} has {len(inputs)} input and "
            f"{len(outputs)} output tensors; unet-core's predictors feed one image and write "
            "one prediction. Use a model with one input and one output."
        )
    for role, tensor in (("input", inputs[0]), ("output", outputs[0])):
        axes = _axes(tensor)
        if axes not in (["batch", "channel", "z", "y", "x"], ["batch", "channel", "y", "x"]):
            raise ModelPackageError(
                f"The {role} of the model package {str(package.location)!r} has axes "
                f"{axes}; unet-core's sliding window feeds (batch, channel, z, y, x) or (batch, "
                "channel, y, x) volumes, so this model cannot be run by it. Use the package "
                "with a tool that handles these axes, or re-export the model with those axes."
            )
    return len(_axes(inputs[0])) - 2


class ScriptedNetwork(nn.Module):
    """TorchScript weights behind the attributes the predictors read (channels, dims)."""

    def __init__(
        self, module: torch.nn.Module, *, in_channels: int, out_channels: int, spatial_dims: int
    ) -> None:
        super().__init__()
        self.module = module
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.module(x)
        return out


class OnnxNetwork(nn.Module):
    """ONNX weights run by onnxruntime (CPU) behind the same attributes as a network."""

    def __init__(
        self, session: Any, *, in_channels: int, out_channels: int, spatial_dims: int
    ) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().cpu().numpy()
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(out).to(x.device)
