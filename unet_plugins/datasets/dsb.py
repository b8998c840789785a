"""``DSB2018Dataset``: whole 2D images from ``images/`` (and ``masks/``) folders.

Each ``file_paths`` entry is a folder with ``images/`` and, for train/val, ``masks/``; every
entry is used (the reference read only the first). Images and masks are paired by file
name stem, not by ``os.listdir`` order. Images are read on first access in each process
(TIFF with tifffile, other formats with imageio), so the dataset pickles small for
``spawn`` workers. Test items are ``(image tensor, image path)``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from unet_core import formats
from unet_core.config import LoadersConfig
from unet_core.errors import DataError
from unet_core.io import NonFinitePolicy, apply_policy
from unet_plugins.datasets.collate import prediction_collate
from unet_plugins.datasets.configs import DSB2018DatasetConfig
from unet_plugins.datasets.inputs import image_folders, phase_section
from unet_plugins.datasets.patches import as_tensor, writable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".gif")


def list_images(folder: Path) -> dict[str, Path]:
    """``stem -> path`` of the image files in ``folder``, sorted by stem."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise DataError(
                f"{folder} holds two images with the stem {p.stem!r} ({out[p.stem].name}, "
                f"{p.name}); image and mask files are paired by stem, so stems must be unique."
            )
        out[p.stem] = p
    return out


def pair_images(images: dict[str, Path], masks: dict[str, Path], root: Path) -> list[Path]:
    """The mask path for each image (same stem); DataError naming unmatched files."""
    if set(images) == set(masks):
        return [masks[s] for s in images]
    missing = sorted(set(images) - set(masks))
    extra = sorted(set(masks) - set(images))
    raise DataError(
        f"The images and masks in {root} do not pair up by file name: images without a mask: "
        f"{', '.join(missing[:5]) or 'none'}{' ...' if len(missing) > 5 else ''}; masks without "
        f"an image: {', '.join(extra[:5]) or 'none'}{' ...' if len(extra) > 5 else ''}. Give "
        f"each mask the same file name (stem) as its image."
    )


def read_image(path: Path, expand_dims: bool) -> np.ndarray:
    """An image as (Y,X) / (Y,X,C), with ``expand_dims``: (1,Y,X) / (C,1,Y,X)."""
    found = formats.claim(str(path))
    if found is not None and found[1].single_array:
        # a volume format (TIFF) puts known channel axes first: RGB (Y,X,S) -> (C,1,Y,X)
        reader = found[1].open(str(path), primary="image", key="loaders.file_paths")
        try:
            img = np.asarray(reader.array("image", key="loaders.file_paths", in_memory=True))
        finally:
            reader.close()
        return img[None] if expand_dims and img.ndim == 2 else img
    else:
        import imageio.v3 as iio

        try:
            img = np.asarray(iio.imread(path))
        except Exception as exc:  # imageio raises many types for unreadable files
            raise DataError(f"Cannot read the image {path}: {exc}.") from None
    if not expand_dims:
        return img
    if img.ndim == 2:
        return img[None]
    if img.ndim == 3:
        return np.transpose(img[None], (3, 0, 1, 2))
    raise DataError(f"The image {path} has shape {img.shape}; expected (Y,X) or (Y,X,C).")


class DSB2018Dataset(Dataset):
    """2D images and instance masks in ``<root>/images`` and ``<root>/masks``."""

    Config = DSB2018DatasetConfig

    collate_fn = staticmethod(prediction_collate)

    def __init__(
        self,
        root: str,
        phase: str,
        transformer: Any,
        expand_dims: bool = True,
        nonfinite: NonFinitePolicy | None = None,
    ) -> None:
        from unet_core.dataset_api import build_pipeline

        self.root = Path(root)
        self.nonfinite = nonfinite or NonFinitePolicy()
        self.phase = phase
        self.expand_dims = expand_dims
        images_dir = self.root / "images"
        if not images_dir.is_dir():
            raise DataError(
                f"{self.root} (loaders.{phase}.file_paths) has no images/ folder; "
                f"DSB2018Dataset expects <folder>/images/ and, for training, <folder>/masks/."
            )
        images = list_images(images_dir)
        if not images:
            raise DataError(
                f"The folder {images_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)})."
            )
        self.image_paths = list(images.values())
        self.mask_paths: list[Path] | None = None
        if phase != "test":
            masks_dir = self.root / "masks"
            if not masks_dir.is_dir():
                raise DataError(
                    f"{self.root} has no masks/ folder, which the {phase} phase needs "
                    f"(one mask per image, same file name)."
                )
            self.mask_paths = pair_images(images, list_images(masks_dir), self.root)
        self.file_path = str(images_dir)
        where = f"loaders.{phase}.transformer"
        self.pipelines = {"raw": build_pipeline(transformer.raw, None, where=f"{where}.raw")}
        if phase != "test":
            self.pipelines["label"] = build_pipeline(
                transformer.label or [], None, where=f"{where}.label"
            )
        self._cache: dict[str, Any] = {}

    @property
    def paths(self) -> list[str]:
        return [str(p) for p in self.image_paths]

    def __len__(self) -> int:
        return len(self.image_paths)

    def _read(self, path: Path) -> np.ndarray:
        if self._cache.get("pid") != os.getpid():
            self._cache = {"pid": os.getpid()}
        key = str(path)
        if key not in self._cache:
            image = read_image(path, self.expand_dims)
            self._cache[key] = apply_policy(image, self.nonfinite, f"image {path}")
            self._cache[key].setflags(write=False)
        array: np.ndarray = self._cache[key]
        return writable(array)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __getitem__(self, i: int) -> tuple[Any, Any]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"image {i} out of range for {len(self)} images")
        i %= len(self)
        import torch

        seed = int(torch.randint(2**62, ()).item())
        raw = as_tensor(self.pipelines["raw"](self._read(self.image_paths[i]), seed))
        if self.phase == "test":
            return raw, str(self.image_paths[i])
        assert self.mask_paths is not None
        label = as_tensor(self.pipelines["label"](self._read(self.mask_paths[i]), seed))
        return raw, label

    @classmethod
    def input_files(cls, config: Config, loaders: LoadersConfig, phase: str) -> list[str]:
        return image_folders(config, loaders, phase)

    @classmethod
    def create_datasets(
        cls, config: Config, loaders: LoadersConfig, phase: str, needs_weight: bool = False
    ) -> list[DSB2018Dataset]:
        if needs_weight:
            raise DataError(
                "DSB2018Dataset has no weight maps, but the loss needs one; use a loss without "
                "per-voxel weights or an HDF5 dataset with weight_internal_path."
            )
        section = phase_section(loaders, phase)
        return [
            cls(root, phase, section.transformer, config.expand_dims, NonFinitePolicy.of(loaders))
            for root in cls.input_files(config, loaders, phase)
        ]
