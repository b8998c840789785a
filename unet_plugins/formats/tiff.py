"""TIFF volumes: one array per file, memory-mapped when uncompressed, ImageJ voxel size.

A TIFF holds one array, so the primary name (``raw_internal_path``) means the file itself and
any other name a sibling file (:func:`unet_core.io.paths.tiff_sibling`). Voxel size is read
from ImageJ metadata (``spacing`` for Z, the X/Y resolution tags for Y/X) or from the JSON
description tifffile writes; outputs carry both, so Fiji shows the right scale.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from unet_core.errors import DataError
from unet_core.formats import VolumeInfo
from unet_core.interfaces import ComponentConfig
from unet_core.io import tiff_sibling

log = logging.getLogger(__name__)

#: dtypes ImageJ hyperstacks can hold; others are written as plain (shaped) TIFFs.
IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)


def read_tiff(path: str, *, memmap: bool = False) -> Any:
    """A TIFF stack as (Z,Y,X) / (C,Z,Y,X) / (Y,X); memory-mapped read-only when possible."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            data: Any = None
            if memmap:
                try:
                    data = tifffile.memmap(path, mode="r")
                except ValueError:
                    log.info("%s is compressed or not contiguous; reading it whole.", path)
            if data is None:
                data = series.asarray()
    except FileNotFoundError:
        raise DataError(f"The TIFF file {path} does not exist.") from None
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise DataError(f"Cannot read {path} as a TIFF file: {exc}.") from None
    return _tiff_layout(data, axes, path)


def _tiff_layout(data: Any, axes: str, path: str) -> Any:
    """Reorder TIFF axes (tifffile letters) to C,Z,Y,X where the file says what they are."""
    if len(axes) != data.ndim or not axes.endswith("YX") and not axes.endswith("YXS"):
        return data
    names = list(axes.replace("S", "C") if "C" not in axes else axes)
    for alias in ("I", "Q"):
        if alias in names and "Z" not in names:
            names[names.index(alias)] = "Z"
    extra = [a for a in names if a not in "CZYX"]
    if any(data.shape[names.index(a)] > 1 for a in extra):
        raise DataError(
            f"The TIFF {path} has axes {axes} with shape {tuple(data.shape)}; only channel (C/S), "
            f"depth (Z) and Y, X are supported. Save one time point per file."
        )
    for a in extra:
        data = np.take(data, 0, axis=names.index(a))
        names.remove(a)
    order = [names.index(a) for a in "CZYX" if a in names]
    if order != list(range(len(order))):
        data = np.transpose(data, order)
        names = [names[i] for i in order]
    if "C" in names and "Z" not in names:
        data = data[:, None]  # (C,Y,X) -> (C,1,Y,X)
    return data


def _per_unit(tag: Any) -> float | None:
    """A resolution tag (pixels per unit, as a rational) -> unit per pixel."""
    if tag is None:
        return None
    num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
    return float(den) / float(num) if num else None


def read_info(path: str) -> VolumeInfo:
    """Voxel size (Z,Y,X) and axes of a TIFF from its ImageJ or tifffile metadata."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        y = _per_unit(page.tags.get("YResolution"))
        x = _per_unit(page.tags.get("XResolution"))
        ij = tif.imagej_metadata or {}
        shaped = (tif.shaped_metadata or [{}])[0] or {}
        z = ij.get("spacing") or (shaped.get("spacing") if isinstance(shaped, dict) else None)
        axes = tif.series[0].axes
    if isinstance(shaped, dict) and shaped.get("voxel_size"):
        vz, vy, vx = (float(v) for v in shaped["voxel_size"])
        return VolumeInfo((vz, vy, vx), str(shaped.get("unit", "um")), axes)
    if x is None or y is None or (x == 1.0 and y == 1.0 and z is None):
        return VolumeInfo(None, "um", axes)
    return VolumeInfo((float(z or 1.0), y, x), str(ij.get("unit", "um")), axes)


def write_tiff(path: str, array: np.ndarray, info: VolumeInfo | None, compress: bool) -> None:
    """An ImageJ hyperstack when the dtype allows and no axis is singleton (ImageJ readers
    squeeze those), so Fiji shows the voxel size; else a tifffile shaped TIFF, which keeps the
    exact shape and the voxel size in its JSON description and resolution tags."""
    import tifffile

    array = np.asarray(array)
    kwargs: dict[str, Any] = {"compression": "zlib"} if compress else {}
    voxel = info.voxel_size if info is not None else None
    if voxel is not None:
        kwargs["resolution"] = (1.0 / voxel[2], 1.0 / voxel[1])
    if array.dtype.type in IMAGEJ_DTYPES and array.ndim in (3, 4) and min(array.shape) > 1:
        data = np.moveaxis(array, 0, 1) if array.ndim == 4 else array  # CZYX -> ZCYX
        meta: dict[str, Any] = {"axes": "ZCYX" if array.ndim == 4 else "ZYX"}
        if voxel is not None:
            meta.update(spacing=voxel[0], unit="um")
        tifffile.imwrite(path, np.ascontiguousarray(data), imagej=True, metadata=meta, **kwargs)
        return
    axes = {2: "YX", 3: "ZYX", 4: "CZYX"}.get(array.ndim)
    shaped: dict[str, Any] = {"axes": axes} if axes else {}
    if voxel is not None:
        shaped.update(voxel_size=list(voxel), unit="um")
    tifffile.imwrite(path, array, metadata=shaped, **kwargs)


class TIFFReader:
    def __init__(self, path: str, primary: str, key: str) -> None:
        if not os.path.isfile(path):
            raise DataError(f"The input file {path} ({key}) does not exist. Fix the path in {key}.")
        self.path = path
        self.primary = primary

    def _file(self, name: str, key: str) -> str:
        return (
            self.path
            if name == self.primary
            else tiff_sibling(self.path, name, self.primary, key=key)
        )

    def array(self, name: str, *, key: str, in_memory: bool = False) -> Any:
        return read_tiff(self._file(name, key), memmap=not in_memory)

    def info(self, name: str) -> VolumeInfo:
        return read_info(self._file(name, "dataset"))

    def names(self) -> list[str]:
        return [self.primary]

    def close(self) -> None:
        pass


class _Pending:
    """An output array kept in memory and written as one TIFF when the writer closes."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.data = np.zeros(shape, dtype=dtype)
        self.shape, self.dtype, self.ndim = self.data.shape, self.data.dtype, self.data.ndim

    def __getitem__(self, index: Any) -> Any:
        return self.data[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.data[index] = value


class TIFFWriter:
    """The first array goes to the output file, the others beside it as ``<stem>_<name>``."""

    def __init__(self, tmp: str, final: str, overwrite: bool) -> None:
        self.tmp, self.final, self.overwrite = tmp, final, overwrite
        self._arrays: dict[str, tuple[Any, VolumeInfo | None, bool]] = {}

    def create(
        self,
        name: str,
        shape: Sequence[int],
        dtype: Any,
        *,
        chunks: Sequence[int] | None = None,
        compression: str | int | None = None,
        info: VolumeInfo | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> _Pending:
        pending = _Pending(tuple(int(s) for s in shape), dtype)
        self._arrays[name] = (pending, info, compression not in (None, "none", 0))
        return pending

    def write(
        self,
        name: str,
        array: Any,
        *,
        chunks: Sequence[int] | None = None,
        compression: str | int | None = None,
        info: VolumeInfo | None = None,
        attrs: dict[str, Any] | None = None,
    ) -> None:
        self._arrays[name] = (np.asarray(array), info, compression not in (None, "none", 0))

    def close(self) -> None:
        from pathlib import Path

        from unet_core.prediction_api import atomic_output

        final = Path(self.final)
        for i, (name, (array, info, compress)) in enumerate(self._arrays.items()):
            data = array.data if isinstance(array, _Pending) else array
            if i == 0:
                write_tiff(self.tmp, data, info, compress)
                continue
            side = final.with_name(f"{final.stem}_{name}{final.suffix}")
            with atomic_output(side, self.overwrite) as side_tmp:
                write_tiff(str(side_tmp), data, info, compress)
        self._arrays.clear()

    def abort(self) -> None:
        self._arrays.clear()


class TIFF:
    """TIFF stacks (``.tif .tiff``): one array per file, label files as siblings."""

    class Config(ComponentConfig):
        pass

    suffixes: ClassVar[tuple[str, ...]] = (".tif", ".tiff")
    schemes: ClassVar[tuple[str, ...]] = ()
    single_array: ClassVar[bool] = True

    def open(self, path: str, *, primary: str = "raw", key: str = "file_paths") -> TIFFReader:
        return TIFFReader(path, primary, key)

    def create(self, tmp: str, final: str, *, overwrite: bool = False) -> TIFFWriter:
        return TIFFWriter(tmp, final, overwrite)
