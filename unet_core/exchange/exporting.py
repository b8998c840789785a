"""``export_checkpoint``: one entry point for every format, used by ``unet export``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from unet_core.errors import UsageError
from unet_core.exchange.preprocessing import BIOIMAGEIO_EPS, Step, apply_steps
from unet_core.exchange.sample import noise_sample, read_sample
from unet_core.exchange.source import ExportSource, load_export_source


def export_checkpoint(
    checkpoint: str | Path,
    fmt: str,
    out: Path,
    *,
    config_path: str | Path | None = None,
    sample: str | Path | None = None,
    torchscript_mode: str = "trace",
    metadata: str | Path | None = None,
    onnx: bool | None = None,
) -> str:
    """Export and return a one-line report; nothing is written unless every check passed."""
    source = load_export_source(checkpoint, config_path)
    raw = sample_input(source, sample)
    if fmt == "bioimageio":
        from unet_core.exchange.bioimageio_package import build_package

        return build_package(
            source, raw, out, metadata=metadata, torchscript_mode=torchscript_mode, onnx=onnx
        )
    x = apply_steps([Step("zero_mean_unit_variance", {"eps": BIOIMAGEIO_EPS})], raw)
    if fmt == "torchscript":
        from unet_core.exchange.torchscript import export_torchscript

        diff = export_torchscript(source.model, x, out, mode=torchscript_mode)  # type: ignore[arg-type]
    elif fmt == "onnx":
        from unet_core.exchange.onnx_export import export_onnx

        diff = export_onnx(source.model, x, out)
    else:
        raise UsageError(f"Unknown export format {fmt!r}; use torchscript, onnx or bioimageio.")
    return f"wrote {out} ({fmt}); max difference to the network on {x.shape}: {diff:.2e}"


def sample_input(source: ExportSource, sample: str | Path | None) -> np.ndarray:
    """(1, C, *spatial) float32 crop of ``sample`` or of the config's data; noise without any."""
    step, _ = source.geometry()
    path, key = (Path(sample), "--sample") if sample is not None else _config_volume(source)
    if path is None:
        return noise_sample(source.in_channels, step, source.spatial_dims)
    return read_sample(
        path,
        _raw_name(source),
        in_channels=source.in_channels,
        step=step,
        dims=source.spatial_dims,
        key=key,
    )


def _raw_name(source: ExportSource) -> str:
    loaders = source.config.loaders
    name: Any = loaders.dataset_params().get("raw_internal_path", "raw") if loaders else "raw"
    return name if isinstance(name, str) else str(name[0])


def _config_volume(source: ExportSource) -> tuple[Path | None, str]:
    """The first input of the stored config that exists (test, val, then train), and its key."""
    from unet_core import formats

    loaders = source.config.loaders
    for phase in ("test", "val", "train"):
        section = getattr(loaders, phase, None) if loaders is not None else None
        for name in getattr(section, "file_paths", None) or []:
            path = Path(name)
            if path.exists() and formats.claim(str(path)) is not None:
                return path, f"loaders.{phase}.file_paths"
    return None, ""
