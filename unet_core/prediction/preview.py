"""A PNG to look at before opening a viewer: raw | prediction | segmentation mid-slices.

Only the shown planes are read (an output of any size is fine), through the volume format
that wrote it. Rows: the middle z
plane (Y,X) and, for volumes, the middle y plane (Z,X).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

SEGMENTATION_NAMES = ("segmentation",)


def _planes(array: Any, spatial: tuple[int, int, int]) -> list[np.ndarray]:
    """Middle (Y,X) plane and, if Z > 1, middle (Z,X) plane of a (C,)Z,Y,X array-like."""
    z, y, _ = spatial
    lead = (slice(0, 1),) if len(array.shape) == 4 else ()
    whole = slice(None)
    planes = [np.asarray(array[(*lead, slice(z // 2, z // 2 + 1), whole, whole)])]
    if z > 1:
        planes.append(np.asarray(array[(*lead, whole, slice(y // 2, y // 2 + 1), whole)]))
    return [np.squeeze(p.astype(np.float32) if p.dtype == np.float16 else p) for p in planes]


def _labels_rgb(labels: np.ndarray) -> np.ndarray:
    """Random but stable colours per label, black background."""
    rng = np.random.default_rng(0)
    top = int(labels.max(initial=0))
    colours = rng.uniform(0.25, 1.0, size=(top + 1, 3))
    colours[0] = 0.0
    return np.asarray(colours[labels.astype(np.int64)])


def write_preview(
    output_file: str | Path,
    png_path: str | Path,
    *,
    source: str | None = None,
    raw_name: str = "raw",
    prediction_name: str = "predictions",
) -> Path:
    """Draw the preview of ``output_file`` (and its input ``source``) into ``png_path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unet_core import formats
    from unet_core.errors import DataError

    panels: list[tuple[str, list[np.ndarray], str]] = []
    reader = formats.open_volume(str(output_file), primary=prediction_name, key="output")
    try:
        found: dict[str, Any] = {}
        for name in (prediction_name, *SEGMENTATION_NAMES):
            try:
                array = reader.array(name, key="output_dataset")
            except DataError:
                continue
            # a 2D image's output (Y,X), e.g. DSB2018Predictor's: one plane, read whole
            found.setdefault(name, np.asarray(array)[None] if len(array.shape) == 2 else array)
        if not found:
            raise DataError(f"{output_file} holds neither {prediction_name!r} nor a segmentation.")
        z, y, x = (int(s) for s in next(iter(found.values())).shape[-3:])
        spatial = (z, y, x)
        if source is not None:
            from unet_core.io.volume import Source

            with Source(source, raw_name=raw_name) as src:
                raw = src.volume(raw_name, key="loaders.raw_internal_path")
                panels.append(("raw", _planes(raw, spatial), "gray"))
        pred = found.pop(prediction_name, None)
        if pred is not None:
            is_labels = len(pred.shape) == 3 and np.issubdtype(pred.dtype, np.integer)
            kind = "labels" if is_labels else "viridis"
            panels.append((f"{prediction_name} (ch 0)", _planes(pred, spatial), kind))
        for name, labels in found.items():
            panels.append((name, _planes(labels, spatial), "labels"))
    finally:
        reader.close()
    rows = max(len(p[1]) for p in panels)
    fig, axes = plt.subplots(rows, len(panels), figsize=(4 * len(panels), 4 * rows), squeeze=False)
    for col, (title, planes, kind) in enumerate(panels):
        for row in range(rows):
            ax = axes[row][col]
            ax.axis("off")
            if row >= len(planes):
                continue
            plane = planes[row]
            if kind == "labels":
                ax.imshow(_labels_rgb(plane), interpolation="nearest")
            else:
                ax.imshow(plane, cmap=kind, interpolation="nearest")
            ax.set_title(f"{title}, {'z' if row == 0 else 'y'} mid-slice", fontsize=9)
    fig.tight_layout()
    from unet_core.io.figures import write_png

    return write_png(fig, png_path, dpi=80)
