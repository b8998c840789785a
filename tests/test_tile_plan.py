"""Fast mode's tiles sized to the device: a measured sweep within a memory budget, cached per
(model structure, device, precision), kept to the test patch when inputs are normalised per
patch; ``unet predict --plan`` prints the choice without predicting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_support import run_here
from predict_support import config as predict_config
from predict_support import save_weights, tiny_unet, write_volume

from unet_core.errors import ConfigError
from unet_core.prediction.inference import PatchForward
from unet_core.prediction.run import run_prediction
from unet_core.prediction.tile_sweep import candidates, parse_size, plan_tiles
from unet_core.tiling import patch_grid

CPU = torch.device("cpu")


class Counted:
    """A real PatchForward that counts the forwards it runs (what a sweep costs)."""

    def __init__(self, model: torch.nn.Module, amp: str = "none") -> None:
        self.forward = PatchForward(model, CPU, amp=amp)
        self.calls = 0

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        self.calls += 1
        return self.forward(batch)


def _plan(model: torch.nn.Module, cache: Path, *, precision: str = "none", **kw):
    counted = Counted(model, precision)
    kw.setdefault("max_tile", (32, 48, 48))  # a small volume: two tiles, a short sweep
    plan = plan_tiles(counted, model, CPU, precision=precision, cache_dir=cache, **kw)
    return plan, counted.calls


def test_sweep_is_cached_and_invalidated_by_structure_and_precision(tmp_path: Path) -> None:
    model, _ = tiny_unet()
    first, calls = _plan(model, tmp_path, budget=2**30)
    assert not first.cached and calls >= 2 and first.voxels_per_s > 0
    again, calls = _plan(model, tmp_path, budget=2**30)
    assert again.cached and calls == 0 and (again.tile, again.batch) == (first.tile, first.batch)
    # same structure, other weights: the same plan
    other_weights, _ = tiny_unet(seed=5)
    assert _plan(other_weights, tmp_path, budget=2**30)[1] == 0
    # another structure, or another precision: measured again
    wider, _ = tiny_unet(f_maps=8)
    assert _plan(wider, tmp_path, budget=2**30)[1] > 0
    assert _plan(model, tmp_path, budget=2**30, precision="bf16")[1] > 0
    # a damaged cache file is measured again, not trusted
    Path(first.cache_file).write_text("{not json")
    assert _plan(model, tmp_path, budget=2**30)[1] > 0
    assert json.loads(Path(first.cache_file).read_text())["measured"]


def test_budget_is_respected(tmp_path: Path) -> None:
    model, _ = tiny_unet()
    roomy, _ = _plan(model, tmp_path, budget=2**30)
    per_voxel = roomy.bytes / (np.prod(roomy.tile) * roomy.batch)
    small_budget = int(per_voxel * 32 * 40 * 40)  # room for 32^3 but not 32x48x48
    tight, _ = _plan(model, tmp_path / "fresh", budget=small_budget)
    assert tight.bytes <= small_budget and tight.tile == (32, 32, 32) and tight.batch == 1
    assert all(m.seconds == 0 for m in tight.measured if m.bytes > small_budget)
    with pytest.raises(ConfigError, match="memory-budget"):
        _plan(model, tmp_path, budget=int(per_voxel * 8**3))


def test_candidates_respect_a_patch_limit() -> None:
    assert {t for t, _ in candidates("cpu", (16, 32, 32))} == {(16, 32, 32)}
    tiles = {t for t, _ in candidates("cpu")}
    assert (64, 64, 64) in tiles and (32, 32, 32) in tiles


def test_sizes_parse() -> None:
    assert parse_size("512MiB") == 512 * 2**20 and parse_size("2GB") == 2 * 10**9
    assert parse_size(1024) == 1024
    with pytest.raises(ValueError, match="memory size"):
        parse_size("lots")


def _fast_config(tmp_path: Path, shape, patch, *, global_norm: bool, **predictor):
    model, spec = tiny_unet()
    tmp_path.mkdir(parents=True, exist_ok=True)
    raw = np.random.default_rng(0).random(shape).astype(np.float32)
    path = write_volume(tmp_path / "in.h5", raw)
    ckpt = save_weights(model, tmp_path / "w.pytorch")
    cfg = predict_config(
        spec,
        ckpt,
        [path],
        tmp_path / "out",
        patch=patch,
        stride=patch,
        halo=(0, 0, 0),
        predictor={"name": "StandardPredictor", "fast": True, **predictor},
    )
    cfg["loaders"]["global_normalization"] = global_norm
    return cfg


def test_per_patch_normalisation_keeps_fast_tiles_to_the_test_patch(tmp_path: Path) -> None:
    # one fast tile would cover this whole volume; Standardize per patch must see 8x16x16
    cfg = _fast_config(tmp_path / "a", (20, 40, 40), (8, 16, 16), global_norm=False)
    (per_patch,) = run_prediction(cfg)
    assert per_patch.stats["tile"] == [8, 16, 16]
    cfg = _fast_config(tmp_path / "b", (20, 40, 40), (8, 16, 16), global_norm=True)
    (whole,) = run_prediction(cfg)
    # statistics of the volume: the measured tile, bigger than the patch
    assert whole.stats["tile"][0] == 20 and min(whole.stats["tile"][1:]) >= 24


def test_plan_flag_prints_the_choice_without_predicting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _fast_config(tmp_path, (20, 40, 40), (8, 16, 16), global_norm=True)
    path = tmp_path / "cfg.yml"
    path.write_text(yaml.safe_dump(cfg))
    code, out, err = run_here(capsys, "predict", "--config", str(path), "--plan",
                              "--memory-budget", "1GiB")  # fmt: skip
    assert code == 0, err
    assert "M voxels/s" in out and "chosen" in out and "1024 MiB budget" in out
    # compile: auto's decision for this volume, with its estimate (never on a CPU)
    assert "compile: auto: not compiling the model" in out and "on cpu" in out
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    code, out, _ = run_here(capsys, "predict", "--config", str(path), "--plan")
    assert code == 0 and "cached" in out


# -- compile: auto --------------------------------------------------------------------------
def test_compile_pays_only_on_cuda_beyond_twice_the_break_even() -> None:
    from unet_core.prediction.inference import (
        COMPILE_SECONDS,
        COMPILE_SPEEDUP,
        compile_pays,
        compile_threshold_seconds,
    )

    break_even = COMPILE_SECONDS / (1 - 1 / COMPILE_SPEEDUP)
    assert 16.0 < break_even < 16.5  # 11 s of compiling against a 3.1x faster forward
    assert compile_threshold_seconds() == pytest.approx(2 * break_even)
    assert not compile_pays("cuda", 2 * break_even - 0.1)
    assert compile_pays("cuda", 2 * break_even + 1e-9)
    assert not compile_pays("cpu", 1e6)  # never on a CPU, however long the volume takes


def _predictor(tmp_path: Path, **predictor):
    from unet_core.config import config_from_dict
    from unet_core.prediction.building import build_model, build_predictor

    cfg = config_from_dict(
        _fast_config(tmp_path, (20, 40, 40), (8, 16, 16), global_norm=True, **predictor)
    )
    return build_predictor(cfg, build_model(cfg), CPU)


@pytest.mark.parametrize(
    ("setting", "pays", "compiled"),
    [("auto", False, False), ("auto", True, True), (False, True, False), (True, False, True)],
)
def test_compile_auto_decides_per_volume_from_the_plan(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setting,
    pays: bool,
    compiled: bool,
) -> None:
    import unet_plugins.predictors.tile_choice as tile_choice

    seen: list[tuple[str, float]] = []

    def decide(device_type: str, eager_seconds: float) -> bool:
        seen.append((device_type, eager_seconds))
        return pays  # what a long volume on a GPU would get

    monkeypatch.setattr(tile_choice, "compile_pays", decide)
    predictor = _predictor(tmp_path, compile=setting)
    assert predictor.forward.compiled is (setting is True)  # true compiles up front
    overrides = predictor.slice_builder_overrides((20, 40, 40))
    assert overrides is not None
    assert predictor.forward.compiled is compiled
    if setting == "auto":
        # asked once, with the plan's estimate: tiles x tile voxels / measured voxels/s
        ((device, eager),) = seen
        plan = predictor._plan
        tiles = len(patch_grid((20, 40, 40), overrides["patch_shape"], overrides["stride_shape"]))
        expected = tiles * int(np.prod(overrides["patch_shape"])) / plan.voxels_per_s
        assert device == "cpu" and eager == pytest.approx(expected)
        assert ("compile: auto: compiling" in capsys.readouterr().err) is pays
    else:
        assert seen == []
