"""HDF5 volumes: datasets by internal path, chunked block-wise output, voxel size as attributes.

Voxel size is read from and written to ``element_size_um`` (Z,Y,X; ilastik, the reference's
tools and BigDataViewer read it), ``resolution`` as a fallback on input, and the axes to
``axes``. Inputs are opened read-only with a chunk cache sized for overlapping patches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from unet_core.errors import DataError
from unet_core.formats import VolumeInfo
from unet_core.interfaces import ComponentConfig
from unet_core.io import write_array

#: h5py chunk cache per dataset: overlapping patches re-read the same chunks.
CHUNK_CACHE_BYTES = 32 * 1024**2
VOXEL_ATTRS = ("element_size_um", "resolution")


def open_hdf5(path: str, *, key: str = "file_paths") -> Any:
    """``h5py.File(path, "r")`` with a DataError instead of h5py's OSError."""
    import h5py

    try:
        return h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=10007)
    except FileNotFoundError:
        raise DataError(f"The input file {path} ({key}) does not exist.") from None
    except OSError as exc:
        raise DataError(
            f"Cannot open {path} ({key}) as an HDF5 file: {exc}. Check that the file is a "
            f"complete HDF5 file (not truncated, not still being written) and readable."
        ) from None


def list_datasets(h5: Any) -> list[str]:
    """``name shape dtype`` of every dataset in an open HDF5 file."""
    import h5py

    found: list[str] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(f"'{name}' {tuple(obj.shape)} {obj.dtype}")

    h5.visititems(visit)
    return found


def open_dataset(h5: Any, name: str, *, path: str, key: str) -> Any:
    """``h5[name]`` as an h5py.Dataset; DataError listing what the file has if it is missing."""
    import h5py

    obj = h5.get(name)
    if isinstance(obj, h5py.Dataset):
        return obj
    available = list_datasets(h5)
    problem = "is a group, not a dataset" if obj is not None else "does not exist"
    raise DataError(
        f"The dataset '{name}' ({key}) {problem} in {path}. Datasets in this file: "
        f"{', '.join(available) or 'none'}. Set {key} to one of them."
    )


def compression_options(compression: str | int | None) -> dict[str, Any]:
    """``gzip``/``lzf``/``none``/a gzip level -> h5py create_dataset keywords."""
    if compression in (None, "none", False):
        return {}
    if compression == "gzip":
        return {"compression": "gzip"}
    if compression == "lzf":
        return {"compression": "lzf"}
    if isinstance(compression, int) and not isinstance(compression, bool):
        return {"compression": "gzip", "compression_opts": int(compression)}
    raise ValueError(f"unknown compression {compression!r}")


def chunk_shape(shape: Sequence[int], chunks: Sequence[int] | None) -> Any:
    """Spatial ``chunks`` (Z,Y,X) -> a chunk shape for a (C,)Z,Y,X dataset (channel chunk 1)."""
    if chunks is None:
        return None
    spatial = tuple(min(int(c), int(s)) for c, s in zip(chunks[-3:], shape[-3:]))
    return (1,) * (len(shape) - 3) + spatial


def info_of(ds: Any) -> VolumeInfo:
    attrs = ds.attrs
    size = next((attrs[a] for a in VOXEL_ATTRS if a in attrs), None)
    voxel = None
    if size is not None and np.size(size) >= 3:
        z, y, x = (float(v) for v in np.ravel(size)[-3:])
        voxel = (z, y, x)
    axes = attrs.get("axes")
    axes = axes.decode() if isinstance(axes, bytes) else axes
    extra = {k: attrs[k] for k in ("quantization", "unet_source") if k in attrs}
    return VolumeInfo(voxel, "um", str(axes) if axes else None, extra)


def describe(ds: Any, info: VolumeInfo | None, attrs: dict[str, Any] | None) -> None:
    """Voxel size, axes and extra attributes onto a new dataset."""
    if info is not None:
        if info.voxel_size is not None:
            ds.attrs["element_size_um"] = np.asarray(info.voxel_size, dtype=np.float64)
        axes = info.with_axes(ds.ndim).axes
        if axes:
            ds.attrs["axes"] = axes
    for name, value in (attrs or {}).items():
        ds.attrs[name] = value


class HDF5Reader:
    def __init__(self, path: str, key: str) -> None:
        self.path = path
        self._file = open_hdf5(path, key=key)

    def array(self, name: str, *, key: str, in_memory: bool = False) -> Any:
        ds = open_dataset(self._file, name, path=self.path, key=key)
        return ds[...] if in_memory else ds

    def info(self, name: str) -> VolumeInfo:
        return info_of(open_dataset(self._file, name, path=self.path, key="dataset"))

    def names(self) -> list[str]:
        return list_datasets(self._file)

    def close(self) -> None:
        self._file.close()


class HDF5Writer:
    def __init__(self, tmp: str) -> None:
        import h5py

        # no chunk cache: a full disk fails the write that meets it (a clear StorageError)
        # instead of HDF5's close, which segfaults on chunks it can no longer flush (HDF5 2.0)
        self._file = h5py.File(tmp, "w", rdcc_nbytes=0)

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
    ) -> Any:
        shape = tuple(int(s) for s in shape)
        ds = self._file.create_dataset(
            name,
            shape=shape,
            dtype=dtype,
            chunks=chunk_shape(shape, chunks) or True,
            fillvalue=0,
            **compression_options(compression),
        )
        describe(ds, info, attrs)
        return ds

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
        ds = write_array(
            self._file,
            name,
            np.asarray(array),
            chunks=chunk_shape(np.shape(array), chunks),
            compression=compression_options(compression),
        )
        describe(ds, info, attrs)

    def close(self) -> None:
        self._file.close()

    def abort(self) -> None:
        self._file.close()


class HDF5:
    """HDF5 files (``.h5 .hdf5 .hdf .hd5``): many named datasets per file."""

    class Config(ComponentConfig):
        pass

    suffixes: ClassVar[tuple[str, ...]] = (".h5", ".hdf", ".hdf5", ".hd5")
    schemes: ClassVar[tuple[str, ...]] = ()
    single_array: ClassVar[bool] = False

    def open(self, path: str, *, primary: str = "raw", key: str = "file_paths") -> HDF5Reader:
        return HDF5Reader(path, key)

    def create(self, tmp: str, final: str, *, overwrite: bool = False) -> HDF5Writer:
        return HDF5Writer(tmp)
