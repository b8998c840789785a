"""Lay out the 2D nuclei image as a DSB2018-style dataset (``images/`` + ``masks/`` folders).

``DSB2018Dataset`` reads folders shaped like the Kaggle Data Science Bowl 2018 download: one
image per file in ``<folder>/images/`` and its instance mask, with the same file name, in
``<folder>/masks/``. This cuts ``nuclei2d_raw.tif`` / ``nuclei2d_labels.tif`` (512x512) from
``examples/data`` into square tiles and writes::

    <output>/train/{images,masks}/tile_RR_CC.tif   every row of tiles but the last
    <output>/val/{images,masks}/tile_RR_CC.tif     the last row of tiles
    <output>/test/images/nuclei2d.tif              the whole image, to predict

Default output: ``examples/data/dsb2018`` (git-ignored). Usage::

    python examples/configs/2DUnet_dsb2018/prepare_data.py [--tile 128] [--output DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[3]
DEFAULT_SOURCE = REPO / "examples" / "data"
DEFAULT_OUTPUT = REPO / "examples" / "data" / "dsb2018"


def tiles(image: np.ndarray, size: int) -> dict[tuple[int, int], np.ndarray]:
    """Non-overlapping ``size`` x ``size`` tiles keyed by (row, column); remainders dropped."""
    rows, cols = image.shape[0] // size, image.shape[1] // size
    return {
        (r, c): image[r * size : (r + 1) * size, c * size : (c + 1) * size]
        for r in range(rows)
        for c in range(cols)
    }


def prepare(source: Path, output: Path, tile: int = 128) -> dict[str, int]:
    """Write the train/val/test folders; returns the number of images per phase."""
    raw = tifffile.imread(source / "nuclei2d_raw.tif")
    labels = tifffile.imread(source / "nuclei2d_labels.tif")
    if raw.shape != labels.shape or raw.ndim != 2:
        raise SystemExit(f"expected two 2D images of one shape, got {raw.shape}, {labels.shape}")
    if min(raw.shape) < 2 * tile:
        raise SystemExit(f"--tile {tile} leaves fewer than two rows of tiles in {raw.shape}")
    raw_tiles, label_tiles = tiles(raw, tile), tiles(labels, tile)
    last_row = max(r for r, _ in raw_tiles)
    counts = {"train": 0, "val": 0, "test": 1}
    for (r, c), image in raw_tiles.items():
        phase = "val" if r == last_row else "train"
        name = f"tile_{r:02d}_{c:02d}.tif"
        for kind, data in (("images", image), ("masks", label_tiles[(r, c)])):
            folder = output / phase / kind
            folder.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(folder / name, np.ascontiguousarray(data))
        counts[phase] += 1
    test = output / "test" / "images"
    test.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(test / "nuclei2d.tif", raw)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="folder with nuclei2d_*.tif"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output folder")
    parser.add_argument("--tile", type=int, default=128, help="tile edge in pixels")
    args = parser.parse_args(argv)
    counts = prepare(args.source, args.output, args.tile)
    summary = ", ".join(f"{phase}: {n}" for phase, n in counts.items())
    print(f"wrote {args.output} ({summary} images)")


if __name__ == "__main__":
    main()
