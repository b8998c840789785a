"""The demo's PNG: mid-slices of raw | ground truth | prediction | segmentation + loss curve."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _labels_rgb(labels: np.ndarray) -> np.ndarray:
    """Instance labels as colours on black, stable across runs."""
    rng = np.random.default_rng(7)
    colours = rng.uniform(0.25, 1.0, size=(int(labels.max()) + 1, 3))
    colours[0] = 0.0
    return colours[labels]  # type: ignore[no-any-return]


def save_figure(
    path: str | Path,
    raw: np.ndarray,
    ground_truth: np.ndarray,
    prediction: np.ndarray,
    segmentation: np.ndarray,
    losses: Sequence[tuple[int, float]],
    val_scores: Sequence[tuple[int, float]] = (),
    title: str = "",
) -> Path:
    """Write the figure atomically (temp + rename) and return its path."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = raw.shape[0] // 2
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4))
    panels = [
        ("raw", raw[z], "gray"),
        ("ground truth", _labels_rgb(ground_truth[z]), None),
        ("prediction (foreground probability)", prediction[z], "magma"),
        (
            f"segmentation ({len(np.unique(segmentation)) - 1} objects)",
            _labels_rgb(segmentation[z]),
            None,
        ),
    ]
    for ax, (name, image, cmap) in zip(axes, panels):
        ax.imshow(
            image,
            cmap=cmap,
            vmin=0 if cmap == "magma" else None,
            vmax=1 if cmap == "magma" else None,
        )
        ax.set_title(f"{name}, z={z}", fontsize=10)
        ax.axis("off")
    ax = axes[4]
    if losses:
        it, val = zip(*losses)
        ax.plot(it, val, lw=1, label="train loss")
    if val_scores:
        it, val = zip(*val_scores)
        ax2 = ax.twinx()
        ax2.plot(it, val, "o-", color="tab:green", label="val score")
        ax2.set_ylabel("validation score")
        ax2.set_ylim(0, 1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("training", fontsize=10)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    from unet_core.io.figures import write_png

    return write_png(fig, path, dpi=90)
