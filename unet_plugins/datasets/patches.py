"""What the HDF5/TIFF patch datasets share: slicing, pipelines, per-process storage, items.

A dataset is built in the main process from the file's *metadata* (shapes, dtypes, patch
grid, optional statistics) and keeps no open file and no array in what it pickles, so it
travels to ``spawn`` workers as a few kilobytes. Each process opens/loads its data on first
access (:meth:`PatchDataset._store`). Items:

* train/val: ``(raw, label)`` or ``(raw, label, weight)`` tensors, one per-sample seed shared
  by the raw/label/weight pipelines so spatial transforms agree;
* test: ``(raw patch grown by halo_shape, spatial index)``; the halo is mirrored only beyond
  the volume border, from a window read at the time (nothing is written anywhere).
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from unet_core import registry
from unet_core.config import ComponentRef
from unet_core.errors import DataError
from unet_core.io import (
    FiniteView,
    NonFinitePolicy,
    RegionCache,
    Source,
    Volume,
    compute_stats,
    read_padded,
)
from unet_plugins.datasets.collate import prediction_collate
from unet_plugins.datasets.scaling import RandomScale

log = logging.getLogger(__name__)

ROLES = ("raw", "label", "weight")


def _meta(volume: Volume) -> dict[str, Any]:
    return {"shape": tuple(volume.shape), "dtype": str(volume.dtype), "ndim": volume.ndim}


def as_tensor(value: Any) -> Any:
    """Pipeline output -> torch.Tensor (pipelines without ToTensor return arrays)."""
    import torch

    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.ascontiguousarray(value))


def spatial_only(index: tuple[slice, ...]) -> tuple[slice, slice, slice]:
    z, y, x = index[-3:]
    return (z, y, x)


def with_spatial(index: tuple[slice, ...], spatial: Sequence[slice]) -> tuple[slice, ...]:
    return (*index[:-3], *spatial)


class PatchDataset(Dataset):
    """Base of StandardHDF5Dataset / LazyHDF5Dataset (torch ``Dataset`` protocol)."""

    #: True if patches are read from disk on every access (no whole-volume copy in memory).
    lazy: ClassVar[bool] = False
    collate_fn = staticmethod(prediction_collate)

    def __init__(
        self,
        file_path: str,
        phase: str,
        *,
        slice_builder: ComponentRef[Any],
        transformer: Any,
        names: dict[str, str | list[str] | None],
        global_normalization: bool = False,
        random_scale: RandomScale | None = None,
        key_prefix: str = "loaders",
        nonfinite: NonFinitePolicy | None = None,
    ) -> None:
        if phase not in ("train", "val", "test"):
            raise ValueError(f"phase must be train, val or test, got {phase!r}")
        self.file_path = str(file_path)
        self.phase = phase
        self.names = {role: names.get(role) for role in ROLES}
        if phase == "test":
            self.names["label"] = self.names["weight"] = None
        self.random_scale = random_scale if phase == "train" else None
        self.nonfinite = nonfinite or NonFinitePolicy()
        self._cache: dict[str, Any] = {}
        raw_name = self.names["raw"]
        assert raw_name is not None
        with Source(
            self.file_path, raw_name=_first(raw_name), key=f"{key_prefix}.file_paths"
        ) as src:
            volumes = {
                role: src.volume(name, key=f"{key_prefix}.{role}_internal_path")
                for role, name in self.names.items()
                if name is not None
            }
            self._check_shapes(volumes)
            self.meta = {role: _meta(v) for role, v in volumes.items()}
            self.slice_builder = self._slices(slice_builder, volumes)
            self.stats = (
                compute_stats(FiniteView(volumes["raw"], self.nonfinite))
                if global_normalization
                else None
            )
        self.raw_slices: list[tuple[slice, ...]] = self.slice_builder.raw_slices
        self.label_slices = self.slice_builder.label_slices
        self.weight_slices = self.slice_builder.weight_slices
        self.halo_shape: tuple[int, int, int] = tuple(self.slice_builder.halo_shape)  # type: ignore[assignment]
        self.patch_shape = tuple(getattr(self.slice_builder, "patch_shape", ()))
        self.volume_shape: tuple[int, int, int] = spatial_of(self.meta["raw"]["shape"])
        self.in_channels = self.meta["raw"]["shape"][0] if self.meta["raw"]["ndim"] == 4 else 1
        self._build_pipelines(transformer, key_prefix)

    # -- construction ----------------------------------------------------------------------
    def _check_shapes(self, volumes: dict[str, Volume]) -> None:
        raw = volumes["raw"]
        for role in ("label", "weight"):
            other = volumes.get(role)
            if other is not None and other.spatial_shape != raw.spatial_shape:
                elsewhere = f" ({other.path})" if other.path != raw.path else ""
                raise DataError(
                    f"In {self.file_path} the raw data {self.names['raw']!r} is "
                    f"{raw.shape} but the {role} {self.names[role]!r}{elsewhere} is "
                    f"{other.shape}: their "
                    f"(Z,Y,X) parts {raw.spatial_shape} and {other.spatial_shape} must match. "
                    f"Check {role}_internal_path, or crop the {role} to the raw volume."
                )

    def _slices(self, spec: ComponentRef[Any], volumes: dict[str, Volume]) -> Any:
        try:
            return registry.create(
                "slice_builders",
                spec,
                raw=volumes["raw"],
                label=volumes.get("label"),
                weight=volumes.get("weight"),
            )
        except DataError as exc:
            raise DataError(f"{self.file_path} ({self.phase}): {exc.message}") from None

    def _build_pipelines(self, transformer: Any, key_prefix: str) -> None:
        from unet_core.dataset_api import build_pipeline

        where = f"{key_prefix}.{self.phase}.transformer"
        self.pipelines = {"raw": build_pipeline(transformer.raw, self.stats, where=f"{where}.raw")}
        if self.phase == "test":
            return
        self.pipelines["label"] = build_pipeline(
            transformer.label or [], self.stats, where=f"{where}.label"
        )
        if self.names["weight"] is not None:
            specs = transformer.weight
            if specs is None:
                specs = default_weight_specs(transformer.label or [])
                log.info("No transformer.weight list: using %s for the weight map", specs)
            self.pipelines["weight"] = build_pipeline(specs, self.stats, where=f"{where}.weight")

    # -- per-process storage -----------------------------------------------------------------
    def _store(self, role: str) -> Any:
        """An array-like of ``role`` valid in this process (opened/loaded on first use)."""
        if self._cache.get("pid") != os.getpid():
            self._cache = {"pid": os.getpid()}
        store = self._cache.get(role)
        if store is None:
            store = self._cache[role] = self._open(role)
        return store

    def _source(self) -> Source:
        if "source" not in self._cache:
            names = self.names["raw"]
            assert names is not None
            self._cache["source"] = Source(self.file_path, raw_name=_first(names))
        source: Source = self._cache["source"]
        return source

    def _open(self, role: str) -> Any:
        raise NotImplementedError

    def window(self, box: tuple[slice, ...]) -> PatchDataset:
        """This dataset reading the (Z,Y,X) ``box`` of its raw volume in one piece, on first
        use, and its test patches inside it from memory: a Dask block task reads its block and
        halo once instead of every input chunk once per patch overlapping it. In-memory
        datasets return themselves."""
        if not self.lazy:
            return self
        view = copy.copy(self)
        view._cache = {"pid": os.getpid(), "raw": RegionCache(self._store("raw"), box)}
        return view

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}  # no open file, no loaded volume crosses a process boundary
        return state

    # -- items -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.raw_slices)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"patch {i} out of range for {len(self)} patches")
        i %= len(self)
        import torch

        seed = int(torch.randint(2**62, ()).item())
        if self.phase == "test":
            return self._test_item(i, seed)
        return self._train_item(i, seed)

    def _test_item(self, i: int, seed: int) -> tuple[Any, tuple[slice, slice, slice]]:
        index = spatial_only(self.raw_slices[i])
        patch = writable(read_padded(self._store("raw"), index, self.halo_shape))
        return as_tensor(self.pipelines["raw"](patch, seed)), index

    def _train_item(self, i: int, seed: int) -> tuple[Any, ...]:
        slices = {"raw": self.raw_slices, "label": self.label_slices, "weight": self.weight_slices}
        roles = [r for r in ROLES if r in self.pipelines]
        indices = {r: slices[r][i] for r in roles}  # type: ignore[index]
        scaled = None
        if self.random_scale is not None:
            scaled = self.random_scale.jitter(spatial_only(indices["raw"]), self.volume_shape, seed)
            if scaled is not None:
                indices = {r: with_spatial(idx, scaled) for r, idx in indices.items()}
        out = []
        for role in roles:
            patch = writable(self._store(role)[indices[role]])
            if scaled is not None and self.random_scale is not None:
                patch = self.random_scale.resize(patch, linear=(role == "raw"))
            out.append(as_tensor(self.pipelines[role](patch, seed)))
        return tuple(out)


def writable(patch: Any) -> np.ndarray:
    """A patch the transforms may modify (views of a shared in-memory volume are copied)."""
    patch = np.asarray(patch)
    return patch if patch.flags.writeable else patch.copy()


def _first(names: str | list[str]) -> str:
    return names if isinstance(names, str) else names[0]


def spatial_of(shape: Sequence[int]) -> tuple[int, int, int]:
    z, y, x = shape[-3:]
    return (int(z), int(y), int(x))


def default_weight_specs(label_specs: list[ComponentRef[Any]]) -> list[ComponentRef[Any]]:
    """The label list's spatial transforms (same order and parameters: same choices) + ToTensor."""
    out = [
        ref for ref in label_specs if getattr(registry.get(ref.kind, ref.name), "spatial", False)
    ]
    to_tensor = ComponentRef.from_spec("transforms", {"name": "ToTensor", "expand_dims": False})
    return [*out, to_tensor]
