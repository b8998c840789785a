"""Training in-process on the real nuclei volumes with the built-in plugins.

One module-scoped run of a reference-style config (UNet3D, BCEDiceLoss, DiceCoefficient,
ReduceLROnPlateau, StandardHDF5Dataset) feeds several tests: the score it reaches, the
checkpoint it writes, the TensorBoard events and the hooks it fires.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from test_train_support import DATA, reference_config, state_hash, tiny

from unet_core.config import config_from_dict
from unet_core.engine.checkpoint import REFERENCE_KEYS, load_checkpoint
from unet_core.hooks import hookimpl, plugin_manager
from unet_core.training.run import train


class Recorder:
    """A pluggy plugin registered by the test: records every training event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def unet_train_start(self, trainer: Any, config: Any) -> None:
        self.events.append(("start", {"iteration": trainer.iteration}))

    @hookimpl
    def unet_after_iteration(self, trainer: Any, iteration: int, loss: float) -> None:
        self.events.append(("iteration", {"iteration": iteration, "loss": loss}))

    @hookimpl
    def unet_after_validation(
        self, trainer: Any, iteration: int, score: float, loss: float
    ) -> None:
        self.events.append(("validation", {"iteration": iteration, "score": score}))

    @hookimpl
    def unet_checkpoint_saved(self, trainer: Any, path: str, is_best: bool) -> None:
        self.events.append(
            ("saved", {"path": path, "is_best": is_best, "size": Path(path).stat().st_size})
        )

    @hookimpl
    def unet_train_end(self, trainer: Any, iteration: int, best_score: float | None) -> None:
        self.events.append(("end", {"iteration": iteration, "best": best_score}))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for k, e in self.events if k == kind]


@pytest.fixture(scope="module")
def nuclei_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Recorder, Path]:
    torch.set_num_threads(1)
    ckdir = tmp_path_factory.mktemp("nuclei") / "checkpoints"
    recorder = Recorder()
    pm = plugin_manager()
    pm.register(recorder, name="test-recorder")
    try:
        trainer = train(reference_config(ckdir))
    finally:
        pm.unregister(name="test-recorder")
    return trainer, recorder, ckdir


def test_reference_config_learns_nuclei(nuclei_run: tuple[Any, Recorder, Path]) -> None:
    trainer, _, _ = nuclei_run
    assert trainer.iteration == 120  # exactly max_num_iterations (the reference does 121)
    assert [it for it, _, _ in trainer.val_history] == [60, 120]
    # A constant 0.5 prediction scores a soft Dice of about 0.38 on this validation volume
    # (15 % foreground); the all-foreground prediction 0.27.
    assert trainer.best_eval_score > 0.6
    assert trainer.best_eval_score == max(s for _, s, _ in trainer.val_history)


def test_checkpoints_have_reference_keys_and_exact_state(
    nuclei_run: tuple[Any, Recorder, Path],
) -> None:
    trainer, _, ckdir = nuclei_run
    last = load_checkpoint(ckdir / "last_checkpoint.pytorch")  # weights_only=True
    best = load_checkpoint(ckdir / "best_checkpoint.pytorch")
    assert set(REFERENCE_KEYS) <= set(last)
    assert last["num_iterations"] == 120
    assert last["num_epochs"] == last["epoch"] + 1
    assert last["best_eval_score"] == pytest.approx(trainer.best_eval_score)
    assert state_hash(last["model_state_dict"]) == state_hash(trainer.model.state_dict())
    for key in ("scheduler_state_dict", "rng_state", "epoch_rng_state", "config"):
        assert last[key] is not None, key
    assert last["config"]["model"]["f_maps"] == 4
    assert last["scheduler_state_dict"]["mode"] == "max"
    best_iter = max(trainer.val_history, key=lambda v: v[1])[0]
    assert best["num_iterations"] == best_iter
    assert not list(ckdir.glob(".*.tmp"))  # no temp files left by the atomic writer


def test_tensorboard_events_read_back(nuclei_run: tuple[Any, Recorder, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, _, ckdir = nuclei_run
    runs = list((ckdir / "logs").iterdir())
    assert len(runs) == 1 and (runs[0] / "config.yml").is_file()
    acc = EventAccumulator(str(runs[0]), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert {
        "train_loss_avg",
        "train_eval_score_avg",
        "val_loss_avg",
        "val_eval_score_avg",
        "learning_rate",
    } <= scalars
    assert [e.step for e in acc.Scalars("val_eval_score_avg")] == [60, 120]
    vals = [e.value for e in acc.Scalars("val_eval_score_avg")]
    assert vals == pytest.approx([s for _, s, _ in trainer.val_history])
    assert [e.step for e in acc.Scalars("train_loss_avg")] == [30, 60, 90, 120]
    images = set(acc.Tags()["images"])
    for name in ("inputs", "targets", "predictions"):
        assert f"train_{name}/batch_0/slice_8" in images  # middle z of a 16-slice patch
        assert f"val_0_{name}/batch_0/slice_16" in images  # middle z of a 32-slice patch
    img = acc.Images("val_0_predictions/batch_0/slice_16")[-1]
    assert (img.width, img.height) == (64, 64)


def test_hooks_fire_in_order(nuclei_run: tuple[Any, Recorder, Path]) -> None:
    trainer, recorder, ckdir = nuclei_run
    kinds = [k for k, _ in recorder.events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert [e["iteration"] for e in recorder.of("iteration")] == list(range(1, 121))
    assert [e["iteration"] for e in recorder.of("validation")] == [60, 120]
    saved = recorder.of("saved")
    assert {Path(e["path"]).name for e in saved} >= {"last_checkpoint.pytorch"}
    assert all(e["size"] > 0 for e in saved)
    assert sum(1 for e in saved if e["is_best"]) >= 1
    assert recorder.of("end")[0] == {"iteration": 120, "best": trainer.best_eval_score}


def _run(config: dict[str, Any], **kwargs: Any) -> Any:
    torch.set_num_threads(1)
    return train(config_from_dict(config), **kwargs)


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """Stopping after 4 iterations and resuming gives bit-identical weights to a straight run."""
    straight = _run(tiny(reference_config(tmp_path / "a"), iterations=7, every=3))
    base = tiny(reference_config(tmp_path / "b"), iterations=4, every=3)
    first = _run(base)
    assert first.iteration == 4 and first.epoch_batches == 4
    resumed = _run(
        tiny(reference_config(tmp_path / "b"), iterations=7, every=3),
        resume=tmp_path / "b" / "last_checkpoint.pytorch",
    )
    assert resumed.iteration == 7
    # no repeated validation at the resumed iteration; the 6th matches the straight run
    assert [v[0] for v in resumed.val_history] == [6]
    assert resumed.val_history[0] == pytest.approx(straight.val_history[1])
    assert state_hash(resumed.model.state_dict()) == state_hash(straight.model.state_dict())
    a = load_checkpoint(tmp_path / "a" / "last_checkpoint.pytorch")["optimizer_state_dict"]
    b = load_checkpoint(tmp_path / "b" / "last_checkpoint.pytorch")["optimizer_state_dict"]
    assert torch.equal(a["state"][0]["exp_avg_sq"], b["state"][0]["exp_avg_sq"])


def test_default_metric_and_direction(tmp_path: Path) -> None:
    from unet_core.training.run import build_trainer

    config = tiny(reference_config(tmp_path / "c"))
    del config["eval_metric"]
    config["trainer"]["eval_score_higher_is_better"] = None
    del config["lr_scheduler"]
    trainer = build_trainer(config_from_dict(config))
    assert type(trainer.parts.metric).__name__ == "MeanIoU"
    assert trainer.higher_is_better is True
    assert trainer.best_eval_score == -math.inf
    config["eval_metric"] = {"name": "MSE"}
    trainer = build_trainer(config_from_dict(config))
    assert trainer.higher_is_better is False and trainer.best_eval_score == math.inf


@pytest.mark.parametrize(("setting", "expected"), [(None, True), (False, False), (True, True)])
def test_channels_last_default_on_cpu_for_3d(tmp_path: Path, setting: Any, expected: bool) -> None:
    from unet_core.engine.amp import default_channels_last
    from unet_core.training.run import build_trainer

    config = tiny(reference_config(tmp_path / "c"))
    config["trainer"]["channels_last"] = setting
    config["device"] = "cpu"
    trainer = build_trainer(config_from_dict(config))
    weight = next(p for p in trainer.parts.model.parameters() if p.dim() == 5 and p.shape[1] > 1)
    assert weight.is_contiguous(memory_format=torch.channels_last_3d) is expected
    assert (trainer.parts.memory_format is not None) is expected
    assert default_channels_last(3, "cpu") and not default_channels_last(3, "cuda")
    assert not default_channels_last(2, "cpu")


@pytest.mark.parametrize("model", ["UNet2D", "ResidualUNet2D"])
def test_2d_models_train_on_singleton_z_patches(tmp_path: Path, model: str) -> None:
    """2D models get (N,C,Y,X); the reference could not train ResidualUNet2D (its §12.6)."""
    import h5py
    import tifffile

    data = DATA
    raw = tifffile.imread(data / "nuclei2d_raw.tif").astype(np.float32)
    labels = tifffile.imread(data / "nuclei2d_labels.tif")
    for name, rows in (("train", slice(0, 256)), ("val", slice(256, 512))):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            f["raw"] = raw[None, rows]
            f["label"] = labels[None, rows]
    config = tiny(reference_config(tmp_path / "ck"), iterations=4, every=2)
    config["model"].update(name=model, f_maps=[4, 8], num_groups=2)
    for phase in ("train", "val"):
        section = config["loaders"][phase]
        section["file_paths"] = [str(tmp_path / f"{phase}.h5")]
        section["slice_builder"] = {
            "name": "SliceBuilder",
            "patch_shape": [1, 64, 64],
            "stride_shape": [1, 64, 64],
        }
        for key in ("raw", "label"):
            section["transformer"][key] = [
                t for t in section["transformer"][key] if not t["name"].startswith("Random")
            ]
    trainer = _run(config)
    assert trainer.iteration == 4 and trainer.parts.model.spatial_dims == 2
    assert all(math.isfinite(score) and 0 <= score <= 1 for _, score, _ in trainer.val_history)
    assert load_checkpoint(tmp_path / "ck" / "last_checkpoint.pytorch")["num_iterations"] == 4
