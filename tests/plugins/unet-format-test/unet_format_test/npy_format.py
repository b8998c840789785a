"""``.npy`` volumes: one array per file (labels as sibling files), memory-mapped both ways."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from unet_core.errors import DataError
from unet_core.formats import VolumeInfo
from unet_core.interfaces import ComponentConfig
from unet_core.io import tiff_sibling


class NPYReader:
    def __init__(self, path: str, primary: str, key: str) -> None:
        if not os.path.isfile(path):
            raise DataError(f"The .npy file {path} ({key}) does not exist.")
        self.path, self.primary = path, primary

    def array(self, name: str, *, key: str, in_memory: bool = False) -> Any:
        path = self.path
        if name != self.primary:  # labels live beside the raw file, as for TIFF
            path = tiff_sibling(self.path, name, self.primary, key=key)
        return np.load(path) if in_memory else np.load(path, mmap_mode="r")

    def info(self, name: str) -> VolumeInfo:
        return VolumeInfo()

    def names(self) -> list[str]:
        return [self.primary]

    def close(self) -> None:
        pass


class NPYWriter:
    """The first array is a memmap at the temporary path; others are sibling files."""

    def __init__(self, tmp: str, final: str, overwrite: bool) -> None:
        self.tmp, self.final, self.overwrite = tmp, Path(final), overwrite
        self.arrays: list[tuple[str, Any]] = []

    def _path(self, name: str) -> str:
        if not self.arrays:
            return self.tmp
        return str(self.final.with_name(f"{self.final.stem}_{name}.npy")) + ".partial.npy"

    def create(self, name: str, shape: Any, dtype: Any, **_: Any) -> Any:
        path = self._path(name)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        self.arrays.append((path, out))
        return out

    def write(self, name: str, array: Any, **options: Any) -> None:
        self.create(name, np.shape(array), np.asarray(array).dtype)[...] = array

    def close(self) -> None:
        for i, (path, out) in enumerate(self.arrays):
            out.flush()
            if i:
                os.replace(path, path[: -len(".partial.npy")])

    def abort(self) -> None:
        for i, (path, _) in enumerate(self.arrays):
            if i and os.path.exists(path):
                os.unlink(path)


class NPY:
    class Config(ComponentConfig):
        pass

    suffixes: ClassVar[tuple[str, ...]] = (".npy",)
    schemes: ClassVar[tuple[str, ...]] = ()
    single_array: ClassVar[bool] = True

    def open(self, path: str, *, primary: str = "raw", key: str = "file_paths") -> NPYReader:
        return NPYReader(path, primary, key)

    def create(self, tmp: str, final: str, *, overwrite: bool = False) -> NPYWriter:
        return NPYWriter(tmp, final, overwrite)
