"""A checkpoint as a bioimage.io model package (spec 0.5): weights, axes, processing, tests.

Weights: ``pytorch_state_dict`` whose architecture is the unet-core model class itself (module
and name of the class that built the network, kwargs from the model config, so the package
needs the installed plugin, nothing copied), plus parity-checked TorchScript. The network's
final activation (sigmoid/softmax) is part of its eval-mode forward, so the outputs are
probabilities and no postprocessing step is declared (one would apply it twice).
Sizes: ``min`` and ``step`` from the pooling; halo = half the receptive field (capped so the
smallest input keeps a valid centre). The package is validated with bioimageio.spec before it is
moved into place.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.errors import ExportError
from unet_core.exchange.metadata import PackageMetadata, read_metadata
from unet_core.exchange.preprocessing import Step, apply_steps, map_transforms
from unet_core.exchange.source import ExportSource
from unet_core.io.atomic import atomic_output

INPUT_ID = "raw"
OUTPUT_ID = "prediction"

log = logging.getLogger(__name__)


def _spec() -> None:
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise ExportError(
            "bioimage.io export needs bioimageio.spec, which is not installed. Install the "
            "optional extra: pip install -c constraints.txt 'unet-core[bioimageio]'."
        ) from None


def spatial_axis_ids(dims: int) -> list[str]:
    return ["z", "y", "x"][-dims:]


def axis_sizes(step: tuple[int, ...], field: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Per spatial axis (min, step, halo): min is the smallest step multiple > 2 * halo."""
    out = []
    for s, rf in zip(step, field):
        halo = max(1, rf // 2)
        minimum = s * (2 * halo // s + 1)
        out.append((minimum, s, halo))
    return out


def at_least_min(raw: np.ndarray, source: ExportSource) -> np.ndarray:
    """``raw`` (1, C, *spatial) mirror-padded to the package's smallest input where it is
    smaller: the test tensor must be a valid input (a 4-level network's ``min`` exceeds the
    export's 32^3-64^2 crop)."""
    step, field = source.geometry()
    minimum = [m for m, _, _ in axis_sizes(step, field)]
    spatial = raw.shape[2:]
    if all(n >= m for n, m in zip(spatial, minimum)):
        return raw
    pads = [(0, 0), (0, 0)]
    for n, m in zip(spatial, minimum):
        extra = max(0, m - n)
        pads.append((extra // 2, extra - extra // 2))
    return np.pad(raw, pads, mode="symmetric")


def test_transforms(source: ExportSource) -> list[dict[str, Any]]:
    """The raw transforms prediction uses: loaders.test's, else val's (never train's)."""
    loaders = source.config.loaders
    for phase in ("test", "val"):
        section = getattr(loaders, phase, None) if loaders is not None else None
        if section is not None and section.transformer.raw:
            return [dict(t) for t in section.transformer.raw]
    return []


def build_package(
    source: ExportSource,
    raw: np.ndarray,
    out: Path,
    *,
    metadata: str | Path | None,
    torchscript_mode: str = "trace",
    onnx: bool | None = None,
) -> str:
    """Write the package zip to ``out`` (atomically) and return a one-line report.

    ``onnx``: add ONNX weights; None adds them when onnx/onnxruntime are installed.
    """
    _spec()
    dims = source.spatial_dims
    meta = read_metadata(metadata, default_name=source.checkpoint.stem, dims=dims)
    raw = at_least_min(raw, source)
    steps = map_transforms(test_transforms(source), spatial_axis_ids(dims))
    x = apply_steps(steps, raw)
    from unet_core.exchange.parity import eager_output

    y = eager_output(source.model, x)
    with tempfile.TemporaryDirectory(prefix="unet-bioimageio-") as folder:
        stage = Path(folder)
        files = _stage_files(source, raw, x, y, stage, meta, torchscript_mode)
        asked = onnx is True
        if onnx is None:
            onnx = _onnx_installed()
        if onnx:
            from unet_core.exchange.onnx_export import export_onnx

            files["onnx"] = stage / "weights.onnx"
            try:
                export_onnx(source.model, x, files["onnx"])
            except ExportError as exc:
                if asked:
                    raise
                # ONNX was only added because onnxruntime is installed: the package stands
                # without it (its state dict and TorchScript weights passed their checks)
                log.warning("ONNX weights left out of the package: %s", exc)
                del files["onnx"]
        rdf = _describe(source, steps, meta, files)
        _write(rdf, stage, out)
    formats = ", ".join(rdf["weights"])
    return f"wrote {out} (bioimage.io model, weights: {formats})"


def _onnx_installed() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime", "onnxscript"))


def _stage_files(
    source: ExportSource,
    raw: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    stage: Path,
    meta: PackageMetadata,
    mode: str,
) -> dict[str, Path]:
    import torch

    from unet_core.exchange.cover import write_cover
    from unet_core.exchange.torchscript import export_torchscript

    files = {
        "weights": stage / "weights.pt",
        "torchscript": stage / "weights_torchscript.pt",
        "test_input": stage / "test_input.npy",
        "test_output": stage / "test_output.npy",
        "cover": stage / "cover.png",
        "documentation": stage / "README.md",
    }
    torch.save(source.model.state_dict(), files["weights"])
    export_torchscript(source.model, x, files["torchscript"], mode=mode)  # type: ignore[arg-type]
    np.save(files["test_input"], raw)
    np.save(files["test_output"], y)
    write_cover(raw, y, files["cover"])
    if meta.documentation:
        files["documentation"].write_text(Path(meta.documentation).read_text())
    else:
        files["documentation"].write_text(_default_documentation(source, meta))
    return files


def _default_documentation(source: ExportSource, meta: PackageMetadata) -> str:
    spec = source.model_spec
    return (
        f"# {meta.name}\n\n{meta.description}\n\n"
        f"A {spec.get('name')} trained with unet-core; the architecture is "
        f"`{type(source.model).__module__}.{type(source.model).__qualname__}` with the kwargs of "
        "this package. Outputs are the network's final activation (probabilities for "
        "segmentation).\n"
    )


def _describe(
    source: ExportSource, steps: list[Step], meta: PackageMetadata, files: dict[str, Path]
) -> dict[str, Any]:
    """The rdf.yaml content (files named relative to the staging folder)."""
    import torch

    step, field = source.geometry()
    ids = spatial_axis_ids(source.spatial_dims)
    in_axes: list[dict[str, Any]] = [{"type": "batch"}, _channels(source.in_channels)]
    out_axes: list[dict[str, Any]] = [{"type": "batch"}, _channels(source.out_channels)]
    for axis, (minimum, s, halo) in zip(ids, axis_sizes(step, field)):
        in_axes.append({"type": "space", "id": axis, "size": {"min": minimum, "step": s}})
        ref = {"tensor_id": INPUT_ID, "axis_id": axis}
        out_axes.append({"type": "space", "id": axis, "size": ref, "halo": halo})
    model_cls = type(source.model)
    config = getattr(source.model, "config", None)
    kwargs = (
        config.model_dump(mode="json")
        if config is not None
        else {k: val for k, val in source.model_spec.items() if k != "name"}
    )
    torch_version = torch.__version__.split("+")[0]
    return {
        "type": "model",
        "format_version": "0.5.4",
        "name": meta.name,
        "description": meta.description,
        "authors": meta.authors,
        "cite": meta.cite,
        "license": meta.license,
        "documentation": files["documentation"].name,
        "covers": [files["cover"].name],
        "tags": meta.tags or ["unet-core", f"{source.spatial_dims}d", "unet"],
        "inputs": [
            {
                "id": INPUT_ID,
                "axes": in_axes,
                "test_tensor": {"source": files["test_input"].name},
                "preprocessing": [{"id": s.id, "kwargs": s.kwargs} for s in steps],
            }
        ],
        "outputs": [
            {
                "id": OUTPUT_ID,
                "axes": out_axes,
                "test_tensor": {"source": files["test_output"].name},
            }
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": files["weights"].name,
                "architecture": {
                    "callable": model_cls.__qualname__,
                    "import_from": model_cls.__module__,
                    "kwargs": kwargs,
                },
                "pytorch_version": torch_version,
            },
            "torchscript": {
                "source": files["torchscript"].name,
                "pytorch_version": torch_version,
                "parent": "pytorch_state_dict",
            },
            **_onnx_weights(files),
        },
        "config": {"unet_core": {"model": source.model_spec}},
    }


def _onnx_weights(files: dict[str, Path]) -> dict[str, Any]:
    if "onnx" not in files:
        return {}
    from unet_core.exchange.onnx_export import OPSET

    entry = {"source": files["onnx"].name, "opset_version": OPSET, "parent": "pytorch_state_dict"}
    return {"onnx": entry}


def _channels(n: int) -> dict[str, Any]:
    return {"type": "channel", "channel_names": [f"c{i}" for i in range(n)]}


def _write(rdf: dict[str, Any], stage: Path, out: Path) -> None:
    """Validate the staged package with bioimageio.spec, then zip it into ``out`` atomically."""
    import yaml
    from bioimageio.spec import load_description, save_bioimageio_package

    (stage / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False))
    descr = load_description(stage / "rdf.yaml", format_version="latest")
    summary = descr.validation_summary
    if summary.status not in ("valid-format", "passed"):
        raise ExportError(
            "bioimageio.spec rejects the package that unet-core built, so nothing was written: "
            f"{_first_errors(summary)}. Report this with the model config."
        )
    with atomic_output(out) as tmp:
        zipped = tmp.with_name(tmp.name + ".zip")
        try:
            save_bioimageio_package(descr, output_path=zipped)
            zipped.replace(tmp)
        finally:
            zipped.unlink(missing_ok=True)


def _first_errors(summary: Any) -> str:
    errors = [f"{'.'.join(map(str, e.loc))}: {e.msg}" for d in summary.details for e in d.errors]
    return "; ".join(errors[:4])[:600] or summary.status
