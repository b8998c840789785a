"""Prediction outputs written through a volume format: named after the input, atomic.

:func:`open_output` yields the format's writer on a temporary file beside the output and
renames it into place only when every array is complete; on failure nothing is left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

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
) -> Iterator[VolumeWriter]:
    """The writer of ``format_name`` for ``path``; the file appears complete or not at all.

    ``needed``: uncompressed bytes, named in the message if the disk fills up."""
    from unet_core.prediction.output import atomic_output

    fmt = formats.for_output(format_name) if isinstance(format_name, str) else format_name
    with atomic_output(path, overwrite, needed) as tmp:
        writer = fmt.create(str(tmp), str(path), overwrite=overwrite)
        try:
            yield writer
        except BaseException:
            with suppress(Exception):  # a failing disk fails the abort too: report the cause
                writer.abort()
            raise
        writer.close()
