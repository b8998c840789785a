"""What a volume format (``unet.formats``) looks like: readers, writers and the voxel metadata
carried from an input to its outputs. Re-exported by :mod:`unet_core.interfaces`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    pass


# -- volume formats (``unet.formats``) ------------------------------------------------------
@dataclass(frozen=True)
class VolumeInfo:
    """What a stored array says about its voxels, carried from an input to its outputs.

    ``voxel_size`` is (Z,Y,X) in ``unit``; ``axes`` names the stored axes (e.g. ``ZYX``,
    ``CZYX``); None where the file does not say.
    """

    voxel_size: tuple[float, float, float] | None = None
    unit: str = "um"
    axes: str | None = None
    #: Format-specific attributes worth keeping (e.g. HDF5 ``quantization``).
    attrs: dict[str, Any] = field(default_factory=dict)

    def with_axes(self, ndim: int) -> VolumeInfo:
        """The same voxels for an array of ``ndim`` dimensions (C,Z,Y,X or Z,Y,X)."""
        return VolumeInfo(self.voxel_size, self.unit, "CZYX"[-ndim:] if ndim <= 4 else None)


@runtime_checkable
class ArrayLike(Protocol):
    """Anything with a shape, a dtype and numpy-style slicing that reads only what is asked."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> Any: ...

    def __getitem__(self, index: Any) -> Any: ...


@runtime_checkable
class WritableArray(ArrayLike, Protocol):
    """An array-like that also takes blocks: ``out[index] = values``."""

    def __setitem__(self, index: Any, value: Any) -> None: ...


class VolumeReader(Protocol):
    """One opened input: arrays by name (an HDF5 dataset path; for single-array formats the
    primary name means the file itself and other names sibling files)."""

    path: str

    def array(self, name: str, *, key: str, in_memory: bool = False) -> ArrayLike:
        """The stored array ``name``; DataError naming ``key`` and what exists if missing."""
        ...

    def info(self, name: str) -> VolumeInfo:
        """Voxel size and axes of the array ``name`` (empty VolumeInfo if unknown)."""
        ...

    def names(self) -> list[str]:
        """What this input holds, for messages and ``unet data check``."""
        ...

    def close(self) -> None: ...


class VolumeWriter(Protocol):
    """An output being written; the core renames it into place after :meth:`close`."""

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
    ) -> WritableArray:
        """A new array to fill block by block (unwritten voxels read as 0)."""
        ...

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
        """A whole in-memory array at once (formats may compress it faster than by blocks)."""
        ...

    def close(self) -> None:
        """Flush everything; after it the temporary files are complete."""
        ...

    def abort(self) -> None:
        """Drop what was written (called on failure instead of :meth:`close`)."""
        ...


class VolumeFormat(Protocol):
    """A ``unet.formats`` entry point: a class with an (empty) ``Config`` like any component."""

    Config: ClassVar[type[Any]]
    #: Lower-case file suffixes it reads and writes, the one for new outputs first.
    suffixes: ClassVar[tuple[str, ...]]
    #: URL schemes it opens (``s3``, ``zarr+https``...); empty for plain files.
    schemes: ClassVar[tuple[str, ...]]
    #: One array per file: other arrays (labels, extra outputs) live in sibling files.
    single_array: ClassVar[bool]

    def open(self, path: str, *, primary: str = "raw", key: str = "file_paths") -> VolumeReader:
        """Open ``path`` read-only; DataError (naming ``key``) if it cannot be read."""
        ...

    def create(self, tmp: str, final: str, *, overwrite: bool = False) -> VolumeWriter:
        """An output written at ``tmp`` (a sibling name of ``final``, renamed by the core).

        Optional, for distributed prediction (:mod:`unet_core.prediction.dask_run`): a
        format whose class sets ``concurrent_writes = True`` returns picklable arrays whose
        chunk-aligned blocks many processes may write at once; with ``resumable = True``,
        ``create(..., resume=True)`` reopens an existing ``tmp`` and ``writer.create`` returns
        an existing array of the same shape, dtype and chunks as it is.
        """
        ...
