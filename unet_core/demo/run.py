"""The demo pipeline: data -> train -> predict -> segment -> score -> figure.

Everything goes through the same public API a user has (`unet_core.train`, `unet_core.predict`,
the registry), driven by a reference-style config written into the output folder, so the demo
doubles as an end-to-end check and as a template.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unet_core.demo import DEFAULT_ITERATIONS
from unet_core.hooks import hookimpl, plugin_manager
from unet_core.io.atomic import write_text_atomic

PATCH = (16, 64, 64)
#: 2D images (Z == 1) train a UNet2D on flat patches: cheap enough for a bigger field of view.
PATCH_2D = (1, 128, 128)
VALIDATE_EVERY = 20


@dataclass
class DemoResult:
    output_dir: Path
    files: dict[str, Path]
    scores: dict[str, float]
    seconds: float


@dataclass
class _Recorder:
    """Collects the loss curve through the public hooks (no reach into the trainer)."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    val_scores: list[tuple[int, float]] = field(default_factory=list)

    @hookimpl
    def unet_after_iteration(self, trainer: Any, iteration: int, loss: float) -> None:
        self.losses.append((iteration, float(loss)))

    @hookimpl
    def unet_after_validation(
        self, trainer: Any, iteration: int, score: float, loss: float
    ) -> None:
        self.val_scores.append((iteration, float(score)))


#: The format of the demo's own train/val/test files.
DEMO_FORMAT = "hdf5"


def _suffix() -> str:
    from unet_core import formats

    return formats.for_output(DEMO_FORMAT).suffixes[0]


def _write_h5(path: Path, raw: np.ndarray, label: np.ndarray) -> Path:
    from unet_core.prediction.output_files import open_output

    with open_output(path, DEMO_FORMAT, overwrite=True) as out:
        out.write("raw", raw, compression="gzip")
        out.write("label", label, compression="gzip")
    return path


#: What the demo writes into its output folder (folders: everything inside them).
DEMO_FOLDERS = ("data", "checkpoints", "predictions")
DEMO_FILES = ("config.json", "metrics.json", "demo.png")
#: The file that marks a folder as the demo's own, so that a re-run may replace its results.
DEMO_MARK = ".unet-demo"


def _made_by_demo(out: Path) -> bool:
    """The demo's mark, or (folders of versions before the mark) a config.json of the demo's
    own, whose checkpoint lies in this folder."""
    if (out / DEMO_MARK).is_file():
        return True
    try:
        cfg = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    own = out / "checkpoints" / "best_checkpoint.pytorch"
    return isinstance(cfg, dict) and cfg.get("model_path") == str(own)


def check_output_folder(out: Path) -> None:
    """Refuse an output that is a file, or a folder holding files under the demo's names that
    an earlier demo did not write: a re-run replaces only the demo's own results."""
    from unet_core.errors import UsageError

    if out.exists() and not out.is_dir():
        raise UsageError(
            f"-o {out} is a file; the demo writes a folder of results there. Choose a folder "
            "name with -o (it is created if missing)."
        )
    taken = [name for name in (*DEMO_FOLDERS, *DEMO_FILES) if (out / name).exists()]
    if taken and not _made_by_demo(out):
        raise UsageError(
            f"The output folder {out} already holds {', '.join(taken)}, which the demo did not "
            "write (no earlier demo run there), and the demo would replace them. Choose another "
            "folder with -o, or move those files out."
        )


def check_inputs_outside_outputs(out: Path, inputs: dict[str, str | None]) -> None:
    """Refuse a --data/--labels file that the demo would overwrite (it writes its crops to
    ``out/data``): the user's volume must survive the demo."""
    from unet_core.errors import UsageError

    owned = [out / name for name in DEMO_FOLDERS]
    for option, given in inputs.items():
        if given is None:
            continue
        real = Path(given).resolve()
        inside = real in [out / n for n in DEMO_FILES] or any(
            real.is_relative_to(folder) for folder in owned
        )
        if inside:
            raise UsageError(
                f"{option} {given} lies in the demo's output folder {out}, where the demo "
                f"writes its own files ({', '.join(DEMO_FOLDERS)}/, {', '.join(DEMO_FILES)}); "
                "running would replace your volume. Choose another output folder with -o, or "
                "move the volume out of it."
            )


def prepare_data(
    data_dir: Path, data: str | None, labels: str | None, mark: Path | None = None
) -> dict[str, Path]:
    """train/val/test HDF5 files: generated, or cut from the user's labelled volume (read and
    checked before anything is written; then ``mark`` is written first, if given)."""
    if data is None:
        from unet_core.demo.synthetic import make_nuclei_volume

        volumes = {
            phase: make_nuclei_volume(seed=seed)
            for phase, seed in (("train", 0), ("val", 1), ("test", 2))
        }
    else:
        from unet_core.demo.user_data import split_user_volume

        volumes = split_user_volume(data, labels)
    data_dir.mkdir(parents=True, exist_ok=True)
    if mark is not None:
        write_text_atomic(mark, "Written by `unet demo`: it may replace its results here.\n")
    return {
        phase: _write_h5(data_dir / f"{phase}{_suffix()}", raw, label)
        for phase, (raw, label) in volumes.items()
    }


def is_2d(shape: tuple[int, ...]) -> bool:
    return shape[0] == 1


def model_name(shape: tuple[int, ...]) -> str:
    return "UNet2D" if is_2d(shape) else "UNet3D"


def patch_for(shape: tuple[int, ...]) -> list[int]:
    """The default patch, shrunk to the volume and kept divisible by 4 (two poolings)."""
    if is_2d(shape):
        return [1] + [max(4, min(p, s // 4 * 4)) for p, s in zip(PATCH_2D[1:], shape[1:])]
    return [max(4, min(p, s // 4 * 4)) for p, s in zip(PATCH, shape)]


def demo_config(
    out: Path,
    files: dict[str, Path],
    iterations: int,
    shapes: dict[str, tuple[int, ...]],
    device: str | None = None,
) -> dict[str, Any]:
    """A pytorch-3dunet-style config (plus our opt-in keys) for the demo's train and test."""
    from unet_core.config.sections import phase_section
    from unet_core.engine.device import available_device

    smallest = tuple(min(a, b) for a, b in zip(shapes["train"], shapes["val"]))
    train_patch, test_patch = patch_for(smallest), patch_for(shapes["test"])
    raw_aug: list[dict[str, Any]] = [
        {"name": "Standardize"},
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "ToTensor", "expand_dims": True},
    ]
    label_aug: list[dict[str, Any]] = [
        {"name": "RandomFlip"},
        {"name": "RandomRotate90"},
        {"name": "BlobsToMask"},
        {"name": "ToTensor", "expand_dims": True},
    ]
    plain_label: list[dict[str, Any]] = [
        {"name": "BlobsToMask"},
        {"name": "ToTensor", "expand_dims": True},
    ]

    half = [max(1, p // 2) for p in train_patch]
    # validate at least once: prediction loads the best checkpoint, which validation writes
    every = max(1, min(VALIDATE_EVERY, iterations))
    return {
        "manual_seed": 0,
        "device": device or available_device(),  # written out: config.json says where it ran
        "model": {
            "name": model_name(shapes["train"]),
            "in_channels": 1,
            "out_channels": 1,
            "f_maps": [8, 16, 32],
            "layer_order": "gcr",
            "num_groups": 4,
            "final_sigmoid": True,
        },
        "loss": {"name": "BCEDiceLoss", "alpha": 1.0},
        "eval_metric": {"name": "DiceCoefficient"},
        "optimizer": {"name": "Adam", "learning_rate": 0.002, "weight_decay": 0.00001},
        # stepped once per validation, as in the reference
        "lr_scheduler": {
            "name": "CosineAnnealingLR",
            "T_max": max(1, iterations // every),
            "eta_min": 0.0001,
        },
        "trainer": {
            "checkpoint_dir": str(out / "checkpoints"),
            "max_num_epochs": 1000,
            "max_num_iterations": iterations,
            "validate_after_iters": every,
            "log_after_iters": every,
            "max_val_images": 2,
        },
        "loaders": {
            "dataset": "StandardHDF5Dataset",
            "batch_size": 1,
            "num_workers": 0,
            "raw_internal_path": "raw",
            "label_internal_path": "label",
            "output_dir": str(out / "predictions"),
            "train": phase_section(
                [files["train"]], train_patch, half, raw=raw_aug, label=label_aug
            ),
            "val": phase_section([files["val"]], train_patch, label=plain_label),
            "test": phase_section(
                [files["test"]], test_patch, [max(1, p // 2) for p in test_patch]
            ),
        },
        # the demo owns its output folder: a second run replaces the first one's results
        "predictor": {"name": "StandardPredictor", "fast": True, "overwrite": True},
        "postprocessor": {"name": "ConnectedComponents", "threshold": 0.5, "min_size": 20},
        "model_path": str(out / "checkpoints" / "best_checkpoint.pytorch"),
    }


def score(prediction: np.ndarray, segmentation: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Voxel Dice of the thresholded prediction and instance F1/precision/recall at IoU 0.5."""
    from unet_core import registry

    fg, gt = prediction > 0.5, truth > 0
    dice = 2 * np.logical_and(fg, gt).sum() / max(1, fg.sum() + gt.sum())
    scores = {"dice": float(dice)}
    for report in ("f1", "precision", "recall"):
        metric = registry.create(
            "metrics", {"name": "InstanceF1", "iou_threshold": 0.5, "report": report}
        )
        scores[f"instance_{report}"] = float(metric.score(truth.astype(np.int64), segmentation))
    return scores


def run_demo(
    output_dir: str | Path = "unet-demo",
    data: str | None = None,
    labels: str | None = None,
    iterations: int = DEFAULT_ITERATIONS,
    echo: Any = print,
    device: str | None = None,
) -> DemoResult:
    """Run the whole demo into ``output_dir`` and return where everything went (``device``:
    where the model runs; default the best one present)."""
    import unet_core
    from unet_core.config import config_from_dict
    from unet_core.demo.figure import save_figure
    from unet_core.io import Source

    start = time.perf_counter()
    out = Path(output_dir).resolve()
    check_inputs_outside_outputs(out, {"--data": data, "--labels": labels})
    check_output_folder(out)
    echo(f"[1/5] Preparing data in {out / 'data'} ...")
    files = prepare_data(out / "data", data, labels, mark=out / DEMO_MARK)
    shapes = {}
    for phase, path in files.items():
        with Source(str(path)) as src:
            shapes[phase] = src.volume("raw", key="raw").shape
    cfg_dict = demo_config(out, files, iterations, shapes, device)
    write_text_atomic(out / "config.json", json.dumps(cfg_dict, indent=2) + "\n")
    cfg = config_from_dict(cfg_dict)

    where = cfg_dict["device"]
    echo(f"[2/5] Training {model_name(shapes['train'])} on {where} for {iterations} iterations ...")
    recorder = _Recorder()
    pm = plugin_manager()
    pm.register(recorder)
    try:
        # the demo owns its checkpoints folder: a re-run starts over there, and the previous
        # run's checkpoints are moved to checkpoints/previous-runs/ (never deleted)
        unet_core.train(cfg, overwrite=True)
    finally:
        pm.unregister(recorder)

    echo("[3/5] Predicting the held-back volume and segmenting instances ...")
    outputs = unet_core.predict(
        config_from_dict(cfg_dict, ["loaders.output_dir=" + str(out / "predictions")])
    )
    pred_path = outputs.paths[0]
    with Source(str(pred_path), raw_name="predictions") as src:
        prediction = src.volume("predictions", key="predictions").read()[0]
        segmentation = src.volume("segmentation", key="segmentation").read()
    with Source(str(files["test"])) as src:
        raw, truth = src.volume("raw", key="raw").read(), src.volume("label", key="label").read()

    echo("[4/5] Scoring against the ground truth ...")
    scores = score(prediction, segmentation, truth)
    metrics_path = out / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(scores, indent=2) + "\n")

    echo("[5/5] Drawing the figure ...")
    title = f"unet demo: Dice {scores['dice']:.3f}, instance F1@0.5 {scores['instance_f1']:.3f}"
    figure = save_figure(
        out / "demo.png",
        raw,
        truth,
        prediction,
        segmentation,
        recorder.losses,
        recorder.val_scores,
        title,
    )
    files_out = {
        "checkpoint": out / "checkpoints" / "best_checkpoint.pytorch",
        "tensorboard logs": out / "checkpoints" / "logs",
        "prediction": pred_path,
        "metrics": metrics_path,
        "figure": figure,
        "config": out / "config.json",
    }
    return DemoResult(out, files_out, scores, time.perf_counter() - start)
