"""Prediction output files: naming, refusing to clobber, and never leaving half a file.

A predictor writes into a temporary file next to the final one and renames it into place
when every dataset is complete (``os.replace`` is atomic on one filesystem). An existing
output is an error unless ``overwrite`` is set; a failure removes the temporary file.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.errors import DataError


@dataclass
class Written:
    """One completed output file and what it holds."""

    path: str
    datasets: list[str]
    metrics: dict[str, Any] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    source: str | None = None  # the input file (or image) it was predicted from


def output_path(
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None,
    suffix: str = "_predictions",
    extension: str = ".h5",
) -> Path:
    """``<output_dir or input's folder>/<input stem><suffix><extension>`` (reference naming)."""
    src = Path(input_path)
    folder = Path(output_dir) if output_dir not in (None, "") else src.parent
    name = _stem(src)
    return folder / f"{name}{suffix}{extension}"


def _stem(path: Path) -> str:
    """The name without the suffix of the format that reads it (``x.ome.zarr`` -> ``x``)."""
    from unet_core import formats

    found = formats.claim(str(path))
    lowered = path.name.lower()
    if found is not None:
        for suffix in sorted(found[1].suffixes, key=len, reverse=True):
            if lowered.endswith(suffix):
                return path.name[: -len(suffix)]
    return path.name if path.is_dir() else path.stem


def preview_path(output: Path) -> Path:
    """Where ``unet predict --preview`` draws an output: ``<output stem>_preview.png``."""
    return output.with_name(f"{output.stem}_preview.png")


#: How to get past an existing output: for prediction into a folder, and for a named file.
EXISTING_ADVICE = (
    "Delete or move it, choose another loaders.output_dir, or pass --overwrite (or set "
    "predictor.overwrite: true) to replace it."
)
NAMED_FILE_ADVICE = "Choose another output name, or pass --overwrite to replace it."


def check_writable(
    path: Path, overwrite: bool, advice: str = EXISTING_ADVICE, *, make_folder: bool = True
) -> None:
    """Refuse an existing output unless ``overwrite`` (``advice`` ends the message); make the
    folder, or (``make_folder=False``, the checks before any work) only prove it can be made,
    so that a run that then fails on its inputs leaves no empty folder behind."""
    if path.exists() and not overwrite:
        raise DataError(
            f"Output file {str(path)!r} already exists; unet-core does not replace files "
            f"silently. {advice}"
        )
    if not make_folder:
        from unet_core.engine.preflight import folder_problem

        problem = folder_problem(path.parent)
        if problem:
            raise DataError(f"Cannot write the output {str(path)!r}: {problem}")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"Cannot create the output folder {str(path.parent)!r}: {exc.strerror or exc}. "
            "Set loaders.output_dir to a writable folder."
        ) from None


@contextmanager
def atomic_output(
    path: Path, overwrite: bool, needed: int | None = None, advice: str = EXISTING_ADVICE
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` (durably) if the block
    succeeds. A full or failing disk becomes a :class:`StorageError` naming ``path``."""
    from unet_core.io.atomic import durable_replace
    from unet_core.io.scratch import temp_file
    from unet_core.io.space import is_storage_error, storage_error

    check_writable(path, overwrite, advice)
    tmp = temp_file(path.parent, path.stem, "partial", path.suffix)
    os.unlink(tmp)  # h5py/tifffile create it themselves
    try:
        yield tmp
        check_writable(path, overwrite, advice)  # someone else may have written it meanwhile
        durable_replace(tmp, path)
    except BaseException as exc:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)  # folder formats (zarr)
        elif os.path.exists(tmp):
            os.unlink(tmp)
        if is_storage_error(exc):
            raise storage_error(exc, path, needed) from None  # type: ignore[arg-type]
        raise


def source_attrs(source: str | os.PathLike[str]) -> dict[str, str]:
    """The attribute that notes which input an output was predicted from (``unet evaluate``
    and folder runs check it); formats that keep array attributes store it."""
    return {"unet_source": os.path.realpath(source)}


#: float16's largest finite value: anything beyond becomes inf.
FLOAT16_MAX = float(np.finfo(np.float16).max)
#: uint8 stores round(255 p): a value that rounds into 0..255 is stored faithfully.
UINT8_SLACK = 0.5 / 255.0


def check_output(
    values: np.ndarray, dtype: str | None, where: str, offset: tuple[int, ...] | None = None
) -> None:
    """Refuse model output that the file cannot hold faithfully (DataError, nothing written).

    NaN/inf are never written (a narrower dtype would turn NaN into 0); ``uint8`` needs values
    in [0, 1], ``float16`` values within +-65504. ``offset``: where ``values`` lies in the
    output, for the positions named.
    """
    from unet_core.io.finite import NonFiniteCount

    if values.size == 0:
        return
    if not np.isfinite(values).all():
        count = NonFiniteCount()
        count.add(values, offset)
        raise DataError(
            f"The prediction of {where} holds {count.describe()} in C,Z,Y,X order, and the "
            "input had none: the model produced them (diverged or broken weights, or an "
            "overflow under predictor.amp). Its output file was not written. Check the "
            "checkpoint (model_path) or predict with predictor.amp: none."
        )
    lo, hi = float(values.min()), float(values.max())
    if dtype == "uint8" and (lo < -UINT8_SLACK or hi > 1.0 + UINT8_SLACK):
        raise DataError(
            f"predictor.output_dtype: uint8 stores probabilities in [0, 1] as 0..255, but the "
            f"prediction of {where} spans [{lo:g}, {hi:g}]; the values outside would be "
            "clipped. Its output file was not written. Use output_dtype: float32 (or float16), "
            "or a model whose final activation gives probabilities."
        )
    if dtype == "float16" and max(-lo, hi) > FLOAT16_MAX:
        raise DataError(
            f"predictor.output_dtype: float16 holds values up to +-65504, but the prediction "
            f"of {where} spans [{lo:g}, {hi:g}]; the values beyond would become inf. Its output "
            "file was not written. Use output_dtype: float32."
        )


def quantize(values: np.ndarray, dtype: str) -> np.ndarray:
    """float32 probabilities -> the output dtype (uint8: round(p*255)).

    Callers check the values first (:func:`check_output`); clipping only removes the
    half-step that still rounds to 0 or 255.
    """
    if dtype == "float32":
        return values.astype(np.float32, copy=False)
    if dtype == "float16":
        return values.astype(np.float16)
    if dtype == "uint8":
        return np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)  # type: ignore[no-any-return]
    raise ValueError(f"unknown output dtype {dtype!r}")


def segmentation_dtype(max_label: int) -> np.dtype[Any]:
    """uint16 while labels fit (the reference's dtype), uint32 beyond."""
    return np.dtype(np.uint16) if max_label < 2**16 else np.dtype(np.uint32)
