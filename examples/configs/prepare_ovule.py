"""Split the ovule crop into a training and a validation volume for the boundary scenarios.

``examples/data/ovule_boundary.h5`` (raw uint8 and dense cell labels uint16, 32x128x128) is one
file, but training and validation must read different files (validating on training data hides
overfitting, so unet-core refuses it). This writes its two Y halves::

    examples/data/ovule/train/ovule_train.h5   raw, label   (32, 64, 128)   y in [0, 64)
    examples/data/ovule/val/ovule_val.h5       raw, label   (32, 64, 128)   y in [64, 128)

Used by 3DUnet_confocal_boundary, 3DUnet_lightsheet_boundary and 2DUnet_confocal_boundary.
Run from anywhere: ``python examples/configs/prepare_ovule.py [--source FILE] [--output DIR]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = REPO / "examples" / "data" / "ovule_boundary.h5"
DEFAULT_OUTPUT = REPO / "examples" / "data" / "ovule"


def split(source: Path, output: Path) -> list[Path]:
    """Write the two halves (raw + label, gzip) and return their paths."""
    with h5py.File(source, "r") as f:
        raw, label = f["raw"][...], f["label"][...]
    half = raw.shape[1] // 2
    parts = {"train": slice(0, half), "val": slice(half, raw.shape[1])}
    written = []
    for phase, ys in parts.items():
        path = output / phase / f"ovule_{phase}.h5"
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(path, "w") as out:
            out.create_dataset("raw", data=raw[:, ys], compression="gzip", chunks=True)
            out.create_dataset("label", data=label[:, ys], compression="gzip", chunks=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="ovule_boundary.h5")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        raise SystemExit(f"{args.source} does not exist; pass --source PATH/ovule_boundary.h5.")
    for path in split(args.source, args.output):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
