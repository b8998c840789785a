"""Make class-map volumes for the multi-class scenario from the real nuclei stacks.

pytorch-3dunet's multi-class scenario reads a class image (values 0..C-1) as ``label``. The
nuclei stacks in ``examples/data`` hold instance ids, so this derives three classes with the
built-in ``BlobsToMask`` transform (``boundary: true, cross_entropy: true``): 0 background,
1 nucleus interior, 2 nucleus boundary (the background ring around each nucleus). It writes::

    <output>/train/nuclei3d_train_a.h5   raw, label (classes, uint8), instances
    <output>/val/nuclei3d_train_b.h5     raw, label (classes, uint8), instances

Default output: ``examples/data/multiclass`` (git-ignored). Usage::

    python examples/configs/3DUnet_multiclass/prepare_data.py [--source DIR] [--output DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from unet_core import registry

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SOURCE = REPO / "examples" / "data"
DEFAULT_OUTPUT = REPO / "examples" / "data" / "multiclass"
FILES = {"train": "nuclei3d_train_a.h5", "val": "nuclei3d_train_b.h5"}
CLASSES = {"name": "BlobsToMask", "boundary": True, "cross_entropy": True}


def class_map(instances: np.ndarray) -> np.ndarray:
    """(Z,Y,X) instance ids -> (Z,Y,X) uint8 classes 0 background, 1 interior, 2 boundary."""
    transform = registry.create("transforms", CLASSES)
    classes = np.asarray(transform(instances, np.random.default_rng(0)))
    return classes.reshape(instances.shape).astype(np.uint8)


def prepare(source: Path, output: Path) -> list[Path]:
    """Write one file per phase; returns their paths."""
    written = []
    for phase, name in FILES.items():
        with h5py.File(source / name, "r") as f:
            raw, instances = f["raw"][...], f["label"][...]
        path = output / phase / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as out:
            out.create_dataset("raw", data=raw, compression="gzip", chunks=True)
            out.create_dataset("label", data=class_map(instances), compression="gzip", chunks=True)
            out.create_dataset("instances", data=instances, compression="gzip", chunks=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="folder of the stacks")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder")
    args = parser.parse_args(argv)
    for path in prepare(args.source, args.output):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
