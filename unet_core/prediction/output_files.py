"""Prediction outputs written through a volume format: named after the input, atomic.

:func:`open_output` yields the format's writer on a temporary file beside the output and
renames it into place only when every array is complete; on failure nothing is left.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from unet_core import formats
from unet_core.formats import VolumeFormat, VolumeWriter


def output_file(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None,
    format_name: str,
    suffix: str = "_predictions",
) -> Path:
    """``<output_dir or input's folder>/<stem><suffix><format's first suffix>``."""
    from unet_core.prediction.output import output_path

    fmt = formats.for_output(format_name)
    return output_path(input_path, output_dir, suffix=suffix, extension=fmt.suffixes[0])


@contextmanager
def open_output(
    path: Path,
    format_name: str | VolumeFormat,
    *,
    overwrite: bool = False,
    needed: int | None = None,
    advice: str | None = None,
) -> Iterator[VolumeWriter]:
    """The writer of ``format_name`` for ``path``; the file appears complete or not at all.

    ``needed``: uncompressed bytes, named in the message if the disk fills up; ``advice``: what
    to do about an existing ``path`` (default: prediction's)."""
    from unet_core.prediction.output import EXISTING_ADVICE, atomic_output

    fmt = formats.for_output(format_name) if isinstance(format_name, str) else format_name
    with atomic_output(path, overwrite, needed, advice or EXISTING_ADVICE) as tmp:
        writer = fmt.create(str(tmp), str(path), overwrite=overwrite)
        try:
            yield writer
        except BaseException:
            with suppress(Exception):  # a failing disk fails the abort too: report the cause
                writer.abort()
            raise
        writer.close()


def check_pyramid(format_name: str, levels: int, *, key: str = "predictor.pyramid_levels") -> None:
    """Refuse ``levels`` up front when the output format writes no multiscale pyramids."""
    if levels and not getattr(formats.for_output(format_name), "pyramids", False):
        from unet_core.errors import ConfigError

        raise ConfigError(
            f"{key}: {levels} pyramid levels were asked for, but the output format "
            f"{format_name!r} writes no multiscale pyramids. Use an OME-Zarr output "
            "(predictor.output_format: zarr) or remove the key."
        )


def add_pyramid(
    writer: VolumeWriter,
    name: str,
    levels: int,
    *,
    labels: bool | None = None,
    map_boxes: Callable[[Callable[[Any], None], list[Any]], None] | None = None,
) -> list[str]:
    """Add ``levels`` coarser levels of the array ``name`` (labels: nearest voxel, else mean)
    through the writer's ``pyramid`` (formats whose class sets ``pyramids``); ``map_boxes(fn,
    boxes)`` runs the per-box work (default: here, one by one; on Dask: as tasks)."""
    if levels <= 0:
        return []
    pyramid: Any = getattr(writer, "pyramid", None)  # formats declaring ``pyramids`` have it
    if pyramid is None:
        raise TypeError(f"{type(writer).__name__} writes no pyramids (check_pyramid first)")
    return list(pyramid(name, levels, labels=labels, map_boxes=map_boxes))
