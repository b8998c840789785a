"""TensorBoard output of a training run, with the reference's tags.

Scalars: ``train_loss_avg``, ``train_eval_score_avg``, ``val_loss_avg``, ``val_eval_score_avg``,
``learning_rate`` (x = iteration). Images: the middle z slice of input, target and prediction
tagged ``<prefix><inputs|targets|predictions>/batch_<b>/slice_<z>`` (multi-channel inputs and
``log_channelwise`` predictions get ``.../channel_<c>/slice_<z>``). Runs live in
``<checkpoint_dir>/logs/<YYYY-mm-dd_HH-MM-SS>``; a resumed run appends to its own run folder.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from unet_core.config.schema import TensorboardFormatterConfig

CONFIG_NAME = "config.yml"


def new_run_name() -> str:
    """A timestamped run folder name, as the reference names them."""
    return datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")


class TensorBoardLogger:
    """A SummaryWriter plus the reference's image formatting."""

    def __init__(
        self,
        checkpoint_dir: str | os.PathLike[str],
        run_name: str | None = None,
        *,
        formatter: TensorboardFormatterConfig | None = None,
        purge_step: int | None = None,
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_name = run_name or new_run_name()
        self.run_dir = Path(checkpoint_dir) / "logs" / self.run_name
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.skip_last_target = bool(formatter and formatter.skip_last_target)
        self.log_channelwise = bool(formatter and formatter.log_channelwise)
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, float | None], step: int) -> None:
        for tag, value in values.items():
            if value is not None:
                self.writer.add_scalar(tag, float(value), step)

    def images(self, prefix: str, batches: Mapping[str, np.ndarray], step: int) -> None:
        """``batches`` maps inputs/targets/predictions to (N,C,Z,Y,X) or (N,Z,Y,X) arrays."""
        for name, batch in batches.items():
            for tag, img in self.format(name, batch):
                self.writer.add_image(prefix + tag, img, step, dataformats="CHW")

    def format(self, name: str, batch: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """(tag, CHW image) pairs for one batch, following the reference's formatter."""
        batch = np.asarray(batch)
        if batch.dtype == np.float16 or str(batch.dtype) == "bfloat16":
            batch = batch.astype(np.float32)
        if name == "targets" and self.skip_last_target and batch.ndim == 5:
            batch = batch[:, :-1]
        if batch.ndim == 4:  # (N,Z,Y,X): label images
            z = batch.shape[1] // 2
            return [
                (f"{name}/batch_{b}/slice_{z}", _label_rgb(batch[b, z])) for b in range(len(batch))
            ]
        if batch.ndim != 5:
            return []
        z = batch.shape[2] // 2
        out = []
        for b in range(batch.shape[0]):
            per_channel = (name == "predictions" and self.log_channelwise) or (
                name == "inputs" and batch.shape[1] not in (1, 3)
            )
            if per_channel:
                for c in range(batch.shape[1]):
                    tag = f"{name}/batch_{b}/channel_{c}/slice_{z}"
                    out.append((tag, _normalize(batch[b, c, z][None])))
            elif name != "inputs" and batch.shape[1] > 1:
                out.append((f"{name}/batch_{b}/slice_{z}", _label_rgb(batch[b].argmax(0)[z])))
            else:
                out.append((f"{name}/batch_{b}/slice_{z}", _normalize(batch[b, :, z])))
        return out

    def save_config(self, config: Mapping[str, Any]) -> Path:
        """Write the effective config into the run folder (the reference copies its YAML)."""
        import yaml

        path = self.run_dir / CONFIG_NAME
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        return path

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _normalize(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32, copy=False)
    lo, span = float(np.min(img)), float(np.ptp(img))
    if span == 0 or not np.isfinite(span):
        return np.zeros_like(img)
    return (img - lo) / span


def _label_rgb(labels: np.ndarray) -> np.ndarray:
    from skimage.color import label2rgb

    rgb = label2rgb(np.asarray(labels).astype(np.int64), bg_label=0)  # type: ignore[no-untyped-call]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1).astype(np.float32))
