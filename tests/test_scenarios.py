"""Every scenario in examples/configs: the configs validate as shipped, and each one trains for
a few iterations and predicts with its checkpoint on the real volumes in examples/data.

The configs are used as they are, with ``--set``-style overrides that only make the run tiny
(model width, patch size, iteration count) and redirect outputs into ``tmp_path``; the data
preparation scripts shipped next to the configs write into ``tmp_path`` too. Prediction runs
on a small crop of the real test volume, so shapes are checked exactly.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import unet_core
from unet_core.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "examples" / "configs"
SCENARIOS = sorted(p.name for p in CONFIGS.iterdir() if p.is_dir())

TINY_MODEL = ["model.f_maps=[4, 8]", "model.num_groups=2"]
TINY_3D_PATCH = {"patch_shape": "[16, 32, 32]", "stride_shape": "[16, 32, 32]"}
TINY_TEST_3D = {
    "patch_shape": "[16, 32, 32]",
    "stride_shape": "[8, 16, 16]",
    "halo_shape": "[4, 8, 8]",
}


@dataclass
class Scenario:
    """How to make one scenario tiny, and what its prediction must contain."""

    # "ovule" (prepare_ovule.py), "nuclei" (the sample files as they are), "multiclass" or "dsb"
    # (their prepare_data.py)
    data: str
    train_patch: dict[str, str] | None = field(default_factory=lambda: dict(TINY_3D_PATCH))
    test_patch: dict[str, str] | None = field(default_factory=lambda: dict(TINY_TEST_3D))
    crop: tuple[int, int, int] | None = (16, 48, 48)  # test-volume crop (Z, Y, X)
    extra: list[str] = field(default_factory=list)
    datasets: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    test_configs: tuple[str, ...] = ("test_config.yml",)
    # a test config whose outputs differ from ``datasets`` (e.g. one with a postprocessor)
    datasets_of: dict[str, dict[str, tuple[tuple[int, ...], str]]] = field(default_factory=dict)


def _boundary_outputs(crop: tuple[int, int, int]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {"predictions": ((1, *crop), "float32")}


SPECS: dict[str, Scenario] = {
    "2DUnet_confocal_boundary": Scenario(
        data="ovule",
        # square 64x64 halves of the training slices (RandomRotate90 keeps them batchable)
        train_patch=None,
        test_patch={
            "patch_shape": "[1, 64, 64]",
            "stride_shape": "[1, 64, 64]",
            "halo_shape": "[0, 8, 8]",
        },
        crop=(4, 64, 64),
        extra=["loaders.batch_size=2"],
        datasets=_boundary_outputs((4, 64, 64)),
    ),
    "2DUnet_dsb2018": Scenario(
        data="dsb",
        train_patch=None,
        test_patch=None,
        crop=None,
        extra=["loaders.batch_size=2"],
        datasets={"predictions": ((512, 512), "float32"), "segmentation": ((512, 512), "uint16")},
    ),
    "3DUnet_confocal_boundary": Scenario(
        data="ovule",
        datasets=_boundary_outputs((16, 48, 48)),
        test_configs=("test_config.yml", "test_config_lazy.yml"),
        # the in-memory config also segments the cells (SeededWatershed)
        datasets_of={
            "test_config.yml": {
                **_boundary_outputs((16, 48, 48)),
                "segmentation": ((16, 48, 48), "uint16"),
            }
        },
    ),
    "3DUnet_denoising": Scenario(
        data="nuclei",
        datasets={"predictions": ((1, 16, 48, 48), "float32")},
    ),
    "3DUnet_lightsheet_boundary": Scenario(
        data="ovule",
        datasets=_boundary_outputs((16, 48, 48)),
    ),
    "3DUnet_lightsheet_nuclei": Scenario(
        data="nuclei",
        datasets={
            "predictions": ((1, 16, 48, 48), "float32"),
            "segmentation": ((16, 48, 48), "uint16"),
        },
    ),
    "3DUnet_nuclei_instances": Scenario(
        data="nuclei",
        datasets={
            "predictions": ((2, 16, 48, 48), "float32"),
            "segmentation": ((16, 48, 48), "uint16"),
        },
    ),
    "3DUnet_multiclass": Scenario(
        data="multiclass",
        datasets={"predictions": ((16, 48, 48), "uint16")},
    ),
}

#: Scenarios run through the command line in a subprocess (the rest use the Python API).
CLI_SCENARIOS = {"2DUnet_confocal_boundary"}


def test_every_scenario_folder_is_covered():
    assert set(SCENARIOS) == set(SPECS)
    for name in SCENARIOS:
        folder = CONFIGS / name
        assert (folder / "train_config.yml").is_file()
        assert (folder / "test_config.yml").is_file()
        assert (folder / "README.md").is_file()


@pytest.mark.parametrize("name", SCENARIOS)
def test_configs_validate_as_shipped(name):
    """`unet config validate --no-files` accepts every shipped config without overrides (their
    data folders are made by the scenarios' preparation scripts and their model_path by
    training, so the files are checked where the READMEs run validate: after those steps)."""
    runner = CliRunner()
    for path in sorted((CONFIGS / name).glob("*.yml")):
        result = runner.invoke(cli, ["config", "validate", "--no-files", str(path)])
        assert result.exit_code == 0, result.output
        assert "valid" in result.output


# -- data preparation -----------------------------------------------------------------------


def _script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem + "_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_ovule_splits_into_disjoint_halves(sample_data, tmp_path):
    module = _script(CONFIGS / "prepare_ovule.py")
    train, val = module.split(sample_data / "ovule_boundary.h5", tmp_path)
    with h5py.File(sample_data / "ovule_boundary.h5", "r") as f:
        raw, label = f["raw"][...], f["label"][...]
    with h5py.File(train, "r") as a, h5py.File(val, "r") as b:
        assert a["raw"].shape == b["raw"].shape == (32, 64, 128)
        np.testing.assert_array_equal(np.concatenate([a["raw"][...], b["raw"][...]], 1), raw)
        np.testing.assert_array_equal(np.concatenate([a["label"][...], b["label"][...]], 1), label)


def test_prepare_dsb_writes_paired_images_and_masks(sample_data, tmp_path):
    import tifffile

    module = _script(CONFIGS / "2DUnet_dsb2018" / "prepare_data.py")
    counts = module.prepare(sample_data, tmp_path, tile=128)
    assert counts == {"train": 12, "val": 4, "test": 1}
    raw = tifffile.imread(sample_data / "nuclei2d_raw.tif")
    labels = tifffile.imread(sample_data / "nuclei2d_labels.tif")
    for phase in ("train", "val"):
        images = sorted(p.name for p in (tmp_path / phase / "images").iterdir())
        masks = sorted(p.name for p in (tmp_path / phase / "masks").iterdir())
        assert images == masks
    tile = tifffile.imread(tmp_path / "val" / "images" / "tile_03_01.tif")
    np.testing.assert_array_equal(tile, raw[384:512, 128:256])
    mask = tifffile.imread(tmp_path / "train" / "masks" / "tile_00_02.tif")
    np.testing.assert_array_equal(mask, labels[0:128, 256:384])
    whole = tifffile.imread(tmp_path / "test" / "images" / "nuclei2d.tif")
    np.testing.assert_array_equal(whole, raw)


# -- train + predict ------------------------------------------------------------------------


def _data_overrides(spec: Scenario, samples: Path, tmp: Path) -> tuple[list[str], list[str]]:
    """(train overrides, test overrides) that point the configs at prepared / cropped data."""
    train: list[str] = []
    test: list[str] = []
    if spec.data == "ovule":
        _script(CONFIGS / "prepare_ovule.py").split(samples / "ovule_boundary.h5", tmp / "ovule")
        train += [
            f"loaders.train.file_paths=[{tmp / 'ovule' / 'train'}]",
            f"loaders.val.file_paths=[{tmp / 'ovule' / 'val'}]",
        ]
        source = samples / "ovule_boundary.h5"
    elif spec.data == "dsb":
        _script(CONFIGS / "2DUnet_dsb2018" / "prepare_data.py").prepare(samples, tmp / "dsb")
        train += [
            f"loaders.train.file_paths=[{tmp / 'dsb' / 'train'}]",
            f"loaders.val.file_paths=[{tmp / 'dsb' / 'val'}]",
        ]
        test += [f"loaders.test.file_paths=[{tmp / 'dsb' / 'test'}]"]
        source = None
    elif spec.data == "multiclass":
        script = CONFIGS / "3DUnet_multiclass" / "prepare_data.py"
        _script(script).prepare(samples, tmp / "multiclass")
        train += [
            f"loaders.train.file_paths=[{tmp / 'multiclass' / 'train'}]",
            f"loaders.val.file_paths=[{tmp / 'multiclass' / 'val'}]",
        ]
        source = tmp / "multiclass" / "val" / "nuclei3d_train_b.h5"
    else:
        source = samples / "nuclei3d_train_b.h5"  # the configs' own train/val files are used
    if spec.crop is not None:
        assert source is not None
        crop = tmp / "test" / f"{source.stem}.h5"
        crop.parent.mkdir(parents=True)
        z, y, x = spec.crop
        with h5py.File(source, "r") as f, h5py.File(crop, "w") as out:
            for key in f:  # raw, and the ground truth a predictor may score against
                out[key] = f[key][:z, :y, :x]
        test.append(f"loaders.test.file_paths=[{crop}]")
    return train, test


def _phase_patch(phase: str, patch: dict[str, str] | None) -> list[str]:
    if patch is None:
        return []
    out = [f"loaders.{phase}.slice_builder.{k}={v}" for k, v in patch.items()]
    return out + [f"loaders.{phase}.slice_builder.skip_shape_check=true"]


def _train_overrides(spec: Scenario, ckpt: Path) -> list[str]:
    return [
        *TINY_MODEL,
        f"trainer.checkpoint_dir={ckpt}",
        "trainer.max_num_iterations=2",
        "trainer.validate_after_iters=2",
        "trainer.log_after_iters=2",
        "trainer.validate_iters=1",
        "trainer.max_val_images=1",
        "trainer.progress=none",
        "loaders.num_workers=0",
        *_phase_patch("train", spec.train_patch),
        *_phase_patch("val", spec.train_patch),
        *spec.extra,
    ]


def _test_overrides(spec: Scenario, ckpt: Path, out: Path) -> list[str]:
    return [
        *TINY_MODEL,
        f"model_path={ckpt / 'best_checkpoint.pytorch'}",
        f"loaders.output_dir={out}",
        "loaders.num_workers=0",
        *_phase_patch("test", spec.test_patch),
    ]


def _run_cli(entry: str, args: list[str]) -> None:
    """A console script (``unet`` or ``predict3dunet``) in a fresh process, as a user runs it."""
    module, func = {
        "unet": ("unet_core.cli.main", "main"),
        "predict3dunet": ("unet_core.cli.aliases", "predict3dunet"),
    }[entry]
    cmd = [sys.executable, "-c", f"from {module} import {func}; {func}()", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # two cores are shared by the whole suite
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _legacy_flags(overrides: list[str]) -> list[str]:
    """pytorch-3dunet's flags where it has one (``--model_path X``), ``--set`` for the rest."""
    legacy = ("model_path", "loaders.test.file_paths")
    args: list[str] = []
    for item in overrides:
        key, _, value = item.partition("=")
        if key in legacy:
            args += [f"--{key}", *value.strip("[]").split(", ")]
        else:
            args += ["--set", item]
    return args


def _sets(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def _check_outputs(folder: Path, spec: Scenario, name: str, test_config: str) -> None:
    files = sorted(folder.glob("*_predictions.h5"))
    assert len(files) == 1, (name, list(folder.iterdir()) if folder.is_dir() else folder)
    with h5py.File(files[0], "r") as f:
        found = {k: (f[k].shape, str(f[k].dtype)) for k in f}
        assert found == spec.datasets_of.get(test_config, spec.datasets), (name, test_config)
        for key in found:
            values = f[key][...]
            assert np.isfinite(values.astype(np.float64)).all()
        if name == "3DUnet_multiclass":
            assert set(np.unique(f["predictions"][...])) <= {0, 1, 2}
        if "segmentation" not in found and found["predictions"][1] == "float32":
            probs = f["predictions"][...]
            if name != "3DUnet_denoising":  # regression outputs are unbounded
                assert probs.min() >= 0.0 and probs.max() <= 1.0


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_trains_and_predicts(name, sample_data, tmp_path, monkeypatch):
    """A few iterations with validation and checkpoints, then prediction with the checkpoint."""
    monkeypatch.chdir(ROOT)  # the configs' examples/data paths are relative to the repo root
    spec = SPECS[name]
    folder = CONFIGS / name
    ckpt = tmp_path / "checkpoints"
    train_data, test_data = _data_overrides(spec, sample_data, tmp_path)
    train_overrides = _train_overrides(spec, ckpt) + train_data

    if name in CLI_SCENARIOS:
        args = ["train", "--config", str(folder / "train_config.yml"), *_sets(train_overrides)]
        _run_cli("unet", args)
    else:
        cfg = unet_core.load_config(str(folder / "train_config.yml"), train_overrides)
        result = unet_core.train(cfg)
        assert result.iterations == 2

    for file in ("best_checkpoint.pytorch", "last_checkpoint.pytorch"):
        assert (ckpt / file).is_file()
    state = torch.load(ckpt / "last_checkpoint.pytorch", weights_only=True, map_location="cpu")
    assert state["num_iterations"] == 2
    assert "model_state_dict" in state and "optimizer_state_dict" in state
    assert list((ckpt / "logs").iterdir()), "no TensorBoard run was written"

    for test_config in spec.test_configs:
        out = tmp_path / f"predictions_{Path(test_config).stem}"
        test_overrides = _test_overrides(spec, ckpt, out) + test_data
        if name in CLI_SCENARIOS:
            # the reference's command name and flags
            config = str(folder / test_config)
            _run_cli("predict3dunet", ["--config", config, *_legacy_flags(test_overrides)])
        else:
            cfg = unet_core.load_config(str(folder / test_config), test_overrides)
            unet_core.predict(cfg)
        _check_outputs(out, spec, name, test_config)
