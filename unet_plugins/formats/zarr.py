"""Zarr v3 and OME-Zarr (NGFF 0.4 read, 0.5 written): chunked volumes of any size.

Reading: any zarr array, or any array of a zarr group by its path (``raw_internal_path: raw``,
``labels/cells/0``). A name that is an OME-Zarr image group (or the primary name on an image
root) reads its full-resolution level; another level is chosen by its path (``1``,
``image/2``). Axes and voxel size come from the ``multiscales`` metadata. Paths may be fsspec
URLs (``s3://``, ``https://``): zarr opens them itself.

Writing: the first array that is not a label image becomes the OME-Zarr image of the root
(``multiscales`` pointing at it, so ``name`` still reads it back); integer arrays written
after it become NGFF labels (``labels/<name>/0``) so napari shows them over the image; names
starting with ``_`` are plain bookkeeping arrays. Chunks are aligned to the prediction blocks
and compressed with Blosc/zstd (zarr compresses the chunks of one write in parallel).

An output is a folder written beside the final name and renamed into place by the core; the
same temporary folder can be opened again (``resume``) to finish an interrupted run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from unet_core.errors import DataError
from unet_core.formats import VolumeInfo
from unet_core.interfaces import ComponentConfig
from unet_plugins.formats.ngff import (
    add_level,
    label_group_attrs,
    labels_list_attrs,
    multiscales_attrs,
    ngff_metadata,
    read_multiscales,
)
from unet_plugins.formats.pyramid import DownsampleBox, level_boxes

#: Default chunk (Z,Y,X) of outputs written without a chunk shape (~2 MB of float32).
DEFAULT_CHUNKS = (32, 128, 128)
ZSTD_LEVEL = 5


def _zarr() -> Any:
    try:
        import zarr
    except ImportError:  # pragma: no cover - zarr is a declared dependency of the extra
        raise DataError(
            "Reading or writing zarr needs the zarr package: pip install 'unet-core[zarr]'."
        ) from None
    return zarr


def open_store(path: str, *, key: str) -> Any:
    """The zarr array or group at ``path`` (local folder or fsspec URL), read-only."""
    zarr = _zarr()
    if "://" not in path and not os.path.exists(path):
        raise DataError(f"The input {path} ({key}) does not exist. Fix the path in {key}.")
    try:
        return zarr.open(path, mode="r")
    except ImportError as exc:
        raise DataError(
            f"Cannot open {path} ({key}): reading this URL needs a package zarr/fsspec could "
            f"not import ({exc}). Install it (e.g. s3fs for s3://, aiohttp for https://)."
        ) from None
    except Exception as exc:  # noqa: BLE001 - zarr/fsspec raise many kinds; all mean "can't read"
        raise DataError(
            f"Cannot open {path} ({key}) as zarr: {type(exc).__name__}: {exc}. Check that the "
            "path or URL is right and reachable, that it is a zarr array or group (zarr.json "
            "or .zgroup/.zarray at its root), and that you may read it."
        ) from None


def _is_array(node: Any) -> bool:
    return hasattr(node, "shape") and hasattr(node, "dtype") and not hasattr(node, "members")


def list_arrays(root: Any, prefix: str = "") -> list[str]:
    """``'path' shape dtype`` of every array under ``root`` (for messages)."""
    if _is_array(root):
        return [f"'{prefix or '.'}' {tuple(root.shape)} {root.dtype}"]
    found: list[str] = []
    for name, node in sorted(root.members(max_depth=None)):
        if _is_array(node):
            found.append(f"'{name}' {tuple(node.shape)} {node.dtype}")
    return found


class ZarrReader:
    def __init__(self, path: str, primary: str, key: str) -> None:
        self.path = path
        self.primary = primary
        self._root = open_store(path, key=key)

    def _resolve(self, name: str, key: str) -> tuple[Any, Any, int]:
        """(array, group whose multiscales describe it or None, level)."""
        root = self._root
        if _is_array(root):
            if name == self.primary:
                return root, None, 0
            raise DataError(
                f"{self.path} is a single zarr array {tuple(root.shape)}; it has no array "
                f"{name!r} ({key}). Point {key} at the array itself or use a zarr group."
            )
        node = _get(root, name.strip("/")) if name.strip("/") else root
        level_path = name.strip("/").isdigit()  # "1": a level of a multiscale image
        if node is None and name == self.primary and not level_path:
            # the default raw name on a store that is itself one OME-Zarr image
            node = root if read_multiscales(root.attrs.asdict()) else None
        if node is None:
            node = _get(root, f"labels/{name.strip('/')}")
        if node is not None and _is_array(node):
            parent, _, leaf = name.strip("/").rpartition("/")
            group = _get(root, parent) if parent else root
            if group is not None and not _is_array(group):
                levels = [d["path"] for d in _datasets(group)]
                if leaf in levels:
                    return node, group, levels.index(leaf)
            return node, None, 0
        if node is not None:
            datasets = _datasets(node)
            if datasets:
                array = _get(node, datasets[0]["path"])
                if array is not None and _is_array(array):
                    return array, node, 0
        raise DataError(
            f"The array {name!r} ({key}) does not exist in {self.path}. Arrays in this zarr: "
            f"{', '.join(list_arrays(root)) or 'none'}. Set {key} to one of them (for an "
            "OME-Zarr image: its group, or a level such as '0')."
        )

    def array(self, name: str, *, key: str, in_memory: bool = False) -> Any:
        array, _, _ = self._resolve(name, key)
        return array[...] if in_memory else array

    def info(self, name: str) -> VolumeInfo:
        array, group, level = self._resolve(name, "dataset")
        if group is not None:
            found = read_multiscales(group.attrs.asdict(), level)
            if found is not None:
                return found
        attrs = array.attrs.asdict()
        voxel = attrs.get("element_size_um")
        axes = attrs.get("axes")
        return VolumeInfo(
            tuple(float(v) for v in voxel[-3:]) if voxel else None,  # type: ignore[arg-type]
            "um",
            axes if isinstance(axes, str) else None,
        )

    def names(self) -> list[str]:
        return list_arrays(self._root)

    def close(self) -> None:
        self._root = None


def _get(group: Any, path: str) -> Any:
    try:
        return group[path]
    except (KeyError, FileNotFoundError, ValueError):
        return None


def _datasets(group: Any) -> list[dict[str, Any]]:
    meta = ngff_metadata(group.attrs.asdict())
    multiscales = meta.get("multiscales") or []
    return list(multiscales[0].get("datasets", [])) if multiscales else []


def codecs(compression: str | int | None) -> dict[str, Any]:
    """create_array keywords: Blosc/zstd unless ``none`` (gzip/lzf/levels mean zstd here)."""
    zarr = _zarr()
    if compression in ("none", False):
        return {"compressors": None}
    level = (
        int(compression)
        if isinstance(compression, int) and not isinstance(compression, bool)
        else ZSTD_LEVEL
    )
    blosc = zarr.codecs.BloscCodec(cname="zstd", clevel=max(1, min(9, level)), shuffle="shuffle")
    return {"compressors": [blosc]}


def chunk_shape(shape: Sequence[int], chunks: Sequence[int] | None) -> tuple[int, ...]:
    """Spatial ``chunks`` -> a chunk for a (C,)Z,Y,X array: one channel per chunk."""
    spatial = tuple(chunks[-3:]) if chunks is not None else DEFAULT_CHUNKS
    lead = len(shape) - 3
    if lead < 0:
        return tuple(min(int(c), int(s)) for c, s in zip(spatial[-len(shape) :], shape))
    return (1,) * lead + tuple(max(1, min(int(c), int(s))) for c, s in zip(spatial, shape[-3:]))


class ZarrWriter:
    """A zarr v3 group at ``tmp``; ``resume`` reopens the arrays a previous run created."""

    def __init__(self, tmp: str, *, resume: bool = False) -> None:
        zarr = _zarr()
        self.tmp = tmp
        existing = resume and os.path.isdir(tmp)
        self._root = zarr.open_group(tmp, mode="a" if existing else "w-", zarr_format=3)
        self._image: str | None = self._root.attrs.asdict().get("unet_image")
        self._labels: list[str] = list(self._root.attrs.asdict().get("unet_labels", []))

    def _is_label(self, name: str, shape: Sequence[int], dtype: Any) -> bool:
        return (
            self._image is not None
            and name != self._image
            and np.issubdtype(np.dtype(dtype), np.integer)
            and len(shape) == 3
        )

    def _path(self, name: str, shape: Sequence[int], dtype: Any) -> str:
        name = name.strip("/")
        if name.startswith("_") or name == self._image or name in self._labels:
            return name if name not in self._labels else f"labels/{name}/0"
        return f"labels/{name}/0" if self._is_label(name, shape, dtype) else name

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
        path = self._path(name, shape, dtype)
        old = _get(self._root, path)
        wanted = chunk_shape(shape, chunks)
        if old is not None and _is_array(old):
            if tuple(old.shape) == shape and np.dtype(old.dtype) == np.dtype(dtype):
                if tuple(old.chunks) == wanted:
                    return old  # resuming: keep what an earlier run wrote
            del self._root[path]
        array = self._root.create_array(
            path,
            shape=shape,
            dtype=np.dtype(dtype),
            chunks=wanted,
            fill_value=0,
            **codecs(compression),
        )
        if attrs:
            array.attrs.update({k: _jsonable(v) for k, v in attrs.items()})
        if not name.startswith("_"):
            self._describe(name.strip("/"), path, shape, info)
        return array

    def _describe(self, name: str, path: str, shape: tuple[int, ...], info: Any) -> None:
        info = (info or VolumeInfo()).with_axes(len(shape))
        if path.startswith("labels/"):
            if name not in self._labels:
                self._labels.append(name)
            group = self._root.require_group(f"labels/{name}")
            group.attrs.update(label_group_attrs(name, shape, info))
            self._root.require_group("labels").attrs.update(labels_list_attrs(self._labels))
            self._root.attrs["unet_labels"] = self._labels
        elif self._image is None and len(shape) in (3, 4):
            self._image = name
            self._root.attrs.update(multiscales_attrs(name, path, shape, info))
            self._root.attrs["unet_image"] = name

    def pyramid(
        self,
        name: str,
        levels: int,
        *,
        labels: bool | None = None,
        map_boxes: Callable[[Callable[[Any], None], list[Any]], None] | None = None,
    ) -> list[str]:
        """Add ``levels`` coarser levels of the image or label image ``name`` (each half the
        previous one on every axis longer than 1: mean for images, the nearest voxel for
        labels; ``labels`` None: decided by whether ``name`` is a label image), listed in its
        ``multiscales``; ``map_boxes(fill, boxes)`` runs the per-box work (default: here, in
        order). Returns the new arrays' paths."""
        name = name.strip("/")
        is_label_image = name in self._labels
        nearest = is_label_image if labels is None else labels
        group = self._root[f"labels/{name}"] if is_label_image else self._root
        path = f"labels/{name}/0" if is_label_image else name
        source = self._root[path]
        added = []
        total = (1,) * len(source.shape)  # each level's scale: the product of the factors
        for level in range(1, levels + 1):
            spatial = source.shape[-3:]
            factors = tuple(2 if n > 1 else 1 for n in spatial)
            total = (*total[:-3], *(t * f for t, f in zip(total[-3:], factors)))
            shape = (*source.shape[:-3], *(-(-n // f) for n, f in zip(spatial, factors)))
            target_path = f"labels/{name}/{level}" if is_label_image else f"{name}_{level}"
            target = self._root.create_array(
                target_path,
                shape=shape,
                dtype=source.dtype,
                chunks=tuple(min(c, n) for c, n in zip(source.chunks, shape)),
                fill_value=0,
                compressors=source.compressors,
                overwrite=True,
            )
            fill = DownsampleBox(source, target, factors, nearest)
            boxes = level_boxes(tuple(shape), tuple(target.chunks))
            if map_boxes is None:
                for box in boxes:
                    fill(box)
            else:
                map_boxes(fill, boxes)
            attrs = group.attrs.asdict()
            group.attrs.update(add_level(attrs, target_path.rsplit("/", 1)[-1], total))
            added.append(target_path)
            source = target
        return added

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
        values = np.asarray(array)
        out = self.create(
            name,
            values.shape,
            values.dtype,
            chunks=chunks,
            compression=compression,
            info=info,
            attrs=attrs,
        )
        out[...] = values

    def close(self) -> None:
        self._root = None

    def abort(self) -> None:
        self._root = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class Zarr:
    """Zarr v3 / OME-Zarr folders (``.zarr .ome.zarr``) and zarr URLs (``s3://``, ...)."""

    class Config(ComponentConfig):
        pass

    suffixes: ClassVar[tuple[str, ...]] = (".ome.zarr", ".zarr")
    schemes: ClassVar[tuple[str, ...]] = ("s3", "gs", "gcs", "http", "https", "file", "memory")
    single_array: ClassVar[bool] = False
    #: Chunk-aligned blocks may be written by many processes at once, and an interrupted
    #: output reopened (distributed prediction relies on both).
    concurrent_writes: ClassVar[bool] = True
    resumable: ClassVar[bool] = True
    #: Writers add multiscale levels (``pyramid``) to an image or label image.
    pyramids: ClassVar[bool] = True

    def open(self, path: str, *, primary: str = "raw", key: str = "file_paths") -> ZarrReader:
        return ZarrReader(str(path), primary, key)

    def create(
        self, tmp: str, final: str, *, overwrite: bool = False, resume: bool = False
    ) -> ZarrWriter:
        return ZarrWriter(tmp, resume=resume)
