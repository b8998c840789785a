"""``unet data convert``: copy volumes from one format to another (HDF5/TIFF -> OME-Zarr),
block by block, with voxel size and axes, written atomically under the output name."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from unet_core import formats
from unet_core.errors import DataError
from unet_core.io.volume import Source

#: Output chunk (Z,Y,X); each copied block is a few chunks per axis.
CONVERT_CHUNKS = (32, 128, 128)
BLOCK_CHUNKS = (2, 4, 4)


def boxes(shape: Sequence[int], box: Sequence[int]) -> Iterator[tuple[slice, ...]]:
    """Spatial boxes of ``box`` covering ``shape`` (the last ones clipped)."""
    starts = [range(0, n, b) for n, b in zip(shape, box)]
    for corner in itertools.product(*starts):
        yield tuple(slice(c, min(c + b, n)) for c, b, n in zip(corner, box, shape))


def convert(
    source: str,
    target: str,
    names: Sequence[str],
    *,
    chunks: Sequence[int] = CONVERT_CHUNKS,
    overwrite: bool = False,
    levels: int = 0,
) -> list[str]:
    """Copy the arrays ``names`` of ``source`` into a new ``target``; returns what was copied."""
    from unet_core.engine.work_progress import current
    from unet_core.prediction.output import NAMED_FILE_ADVICE
    from unet_core.prediction.output_files import open_output

    found = formats.claim(target)
    if found is None:
        raise DataError(
            f"No installed volume format writes {target}: its suffix is unknown. Installed "
            f"formats: {formats.describe()}. Name the output e.g. volume.ome.zarr."
        )
    if Path(source).resolve() == Path(target).resolve():
        raise DataError(f"The output {target} is the input itself; name another output.")
    progress = current()
    progress.begin("convert", len(names))
    with (
        Source(source, raw_name=names[0], key="IN") as src,
        open_output(Path(target), found[1], overwrite=overwrite, advice=NAMED_FILE_ADVICE) as out,
    ):
        for name in names:
            volume = src.volume(name, key="--dataset")
            info = src.info(name).with_axes(volume.ndim)
            spatial = volume.spatial_shape
            chunk = tuple(min(int(c), n) for c, n in zip(chunks, spatial))
            array = out.create(
                name.strip("/").replace("/", "_"),
                volume.shape,
                volume.dtype,
                chunks=chunk,
                info=info,
            )
            box = tuple(c * k for c, k in zip(chunk, BLOCK_CHUNKS))
            lead = (slice(None),) * (volume.ndim - 3)
            progress.begin_file(name, len(list(boxes(spatial, box))), unit="blocks")
            for index in boxes(spatial, box):
                array[(*lead, *index)] = np.asarray(volume[(*lead, *index)])
                progress.advance()
            progress.end_file()
            if levels:
                pyramid = getattr(out, "pyramid", None)
                if pyramid is None:
                    raise DataError(
                        f"--levels: the output format of {target} cannot store a multiscale "
                        "pyramid; write OME-Zarr (.ome.zarr) or leave --levels out."
                    )
                pyramid(name.strip("/").replace("/", "_"), levels)
    return list(names)
