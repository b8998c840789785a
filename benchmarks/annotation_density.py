"""How tightly each nuclei volume is annotated (issue 19): the share of bright voxels that carry
no label, overall, near the faces and inside; the share of labelled voxels that are not bright;
and how many bright regions of >= 500 voxels are (almost) wholly unlabelled nuclei.

"Bright" is label-independent: the raw volume smoothed (Gaussian, sigma 1.5) above its own Otsu
threshold. A model trained on one volume learns that volume's annotation habit; if the test
volume leaves more of the bright signal unlabelled, the model's objects come out larger than
their labels there, and at IoU 0.5 such an object counts as a miss and a false detection.

    python benchmarks/annotation_density.py [FILE.h5 ...]   # default: the two nuclei volumes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
from workloads import DATA

#: Voxels closer than this to a face of the volume count as "near the faces".
FACE_DEPTH = 10


def face_distance(shape: tuple[int, ...]) -> np.ndarray:
    """Distance (in voxels) of every voxel to the nearest face of the volume."""
    grids = np.indices(shape)
    return np.minimum.reduce([np.minimum(g, n - 1 - g) for g, n in zip(grids, shape)])


def density(raw: np.ndarray, label: np.ndarray) -> dict[str, float | int]:
    from scipy.ndimage import gaussian_filter
    from scipy.ndimage import label as label_regions
    from skimage.filters import threshold_otsu

    smooth = gaussian_filter(raw.astype(np.float32), 1.5)
    threshold = float(threshold_otsu(smooth))
    bright, labelled = smooth > threshold, label > 0
    near = face_distance(raw.shape) < FACE_DEPTH
    row = {"otsu_threshold": round(threshold, 1), "labelled_share": labelled.mean()}
    for name, where in (("all", np.ones_like(near)), ("faces", near), ("inside", ~near)):
        unlabelled = (bright & ~labelled & where).sum()
        row[f"unlabelled_bright_{name}"] = unlabelled / (bright & where).sum()
    row["labelled_not_bright"] = (labelled & ~bright).sum() / labelled.sum()
    shares: dict[str, float | int] = {k: round(float(v), 3) for k, v in row.items()}
    regions, n = label_regions(bright)
    sizes = np.bincount(regions.ravel(), minlength=n + 1)[1:]
    covered = np.bincount(regions.ravel(), weights=labelled.ravel(), minlength=n + 1)[1:]
    big = sizes >= 500
    shares["bright_regions_500"] = int(big.sum())
    shares["of_them_under_10pc_labelled"] = int((big & (covered < 0.1 * sizes)).sum())
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = [DATA / "nuclei3d_train_a.h5", DATA / "nuclei3d_train_b.h5"]
    parser.add_argument("files", nargs="*", type=Path, default=default)
    args = parser.parse_args()
    print(f"bright: smoothed raw > Otsu; faces: < {FACE_DEPTH} voxels from a face")
    for path in args.files:
        with h5py.File(path, "r") as f:
            print(json.dumps({"file": path.name} | density(f["raw"][:], f["label"][:])))


if __name__ == "__main__":
    main()
