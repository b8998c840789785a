"""Shared helpers of the training tests (no tests here).

The configs are written in the reference's (pytorch-3dunet's) own keys, on the real nuclei
volumes of examples/data, with a tiny UNet3D and small patches so that a run takes seconds.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"

REFERENCE_STYLE = """
model:
  name: UNet3D
  in_channels: 1
  out_channels: 1
  layer_order: gcr
  f_maps: 4
  num_groups: 2
  final_sigmoid: true
  is_segmentation: true
loss:
  name: BCEDiceLoss
  alpha: 1.0
optimizer:
  learning_rate: 0.005
  weight_decay: 0.00001
lr_scheduler:
  name: ReduceLROnPlateau
  mode: max
  factor: 0.5
  patience: 20
eval_metric:
  name: DiceCoefficient
trainer:
  checkpoint_dir: CHECKPOINT_DIR
  resume: null
  pre_trained: null
  validate_after_iters: 60
  log_after_iters: 30
  max_num_epochs: 100
  max_num_iterations: 120
  eval_score_higher_is_better: True
manual_seed: 0
loaders:
  dataset: StandardHDF5Dataset
  batch_size: 1
  num_workers: 0
  raw_internal_path: raw
  label_internal_path: label
  weight_internal_path: null
  global_normalization: true
  train:
    file_paths:
      - TRAIN_FILE
    slice_builder:
      name: SliceBuilder
      patch_shape: [16, 32, 32]
      stride_shape: [8, 16, 16]
      skip_shape_check: true
    transformer:
      raw:
        - name: Standardize
        - name: RandomFlip
        - name: RandomRotate90
        - name: ToTensor
          expand_dims: true
      label:
        - name: RandomFlip
        - name: RandomRotate90
        - name: BlobsToMask
        - name: ToTensor
          expand_dims: true
  val:
    file_paths:
      - VAL_FILE
    slice_builder:
      name: SliceBuilder
      patch_shape: [32, 64, 64]
      stride_shape: [32, 64, 64]
    transformer:
      raw:
        - name: Standardize
        - name: ToTensor
          expand_dims: true
      label:
        - name: BlobsToMask
        - name: ToTensor
          expand_dims: true
"""


def reference_config(checkpoint_dir: Path, **trainer: Any) -> dict[str, Any]:
    """The reference-style nuclei config as a dict; ``trainer`` keys override the defaults."""
    text = (
        REFERENCE_STYLE.replace("CHECKPOINT_DIR", str(checkpoint_dir))
        .replace("TRAIN_FILE", str(DATA / "nuclei3d_train_a.h5"))
        .replace("VAL_FILE", str(DATA / "nuclei3d_train_b.h5"))
    )
    config = yaml.safe_load(text)
    config["trainer"].update(trainer)
    return config


def tiny(config: dict[str, Any], iterations: int = 6, every: int = 3) -> dict[str, Any]:
    """A faster variant: small patches, few validation batches."""
    config = copy.deepcopy(config)
    config["trainer"].update(
        max_num_iterations=iterations,
        validate_after_iters=every,
        log_after_iters=every,
        validate_iters=1,
    )
    train_sb = config["loaders"]["train"]["slice_builder"]
    train_sb.update(patch_shape=[8, 32, 32], stride_shape=[24, 32, 32])
    val_sb = config["loaders"]["val"]["slice_builder"]
    val_sb.update(patch_shape=[8, 32, 32], stride_shape=[46, 68, 68], skip_shape_check=True)
    return config


def write_config(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def state_hash(state: dict[str, Any]) -> str:
    """sha256 over a state dict's names and tensor bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


HOOK_MODULE = '''
"""A hook plugin installed by the training tests through a dist-info folder."""
import hashlib, json, os
from unet_core.hooks import hookimpl

def _out(name):
    return os.path.join(os.environ["UNET_TEST_HOOK_DIR"], name)

@hookimpl
def unet_train_start(trainer, config):
    with open(_out(f"start_rank{trainer.rank}.json"), "w") as f:
        json.dump({"iteration": trainer.iteration, "world": trainer.ctx.world_size}, f)

@hookimpl
def unet_checkpoint_saved(trainer, path, is_best):
    with open(_out(f"saved_rank{trainer.rank}.txt"), "a") as f:
        f.write(f"{path} {is_best} {trainer.iteration}\\n")

@hookimpl
def unet_train_end(trainer, iteration, best_score):
    from unet_core.engine.checkpoint import state_dict_of
    digest = hashlib.sha256()
    state = state_dict_of(trainer.model)
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    sampler = trainer.parts.loaders["train"].sampler
    with open(_out(f"end_rank{trainer.rank}.json"), "w") as f:
        json.dump({"iteration": iteration, "hash": digest.hexdigest(), "best_score": best_score,
                   "samples": trainer.samples_seen, "sampler": type(sampler).__name__,
                   "sampler_rank": getattr(sampler, "rank", None)}, f)
'''


def install_hook_package(where: Path) -> Path:
    """A real (path-installed) distribution declaring a ``unet.hooks`` entry point."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "unet_test_hooks.py").write_text(HOOK_MODULE)
    info = where / "unet_test_hooks-0.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: unet-test-hooks\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text("[unet.hooks]\ntest-hooks = unet_test_hooks\n")
    return where


def subprocess_env(hook_dir: Path | None = None, plugin_path: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if plugin_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(plugin_path), env.get("PYTHONPATH", "")) if p
        )
    if hook_dir is not None:
        hook_dir.mkdir(parents=True, exist_ok=True)
        env["UNET_TEST_HOOK_DIR"] = str(hook_dir)
    return env


def unet_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "unet_core.cli.main", *args]


def run_unet(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        unet_command(*args), env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def dedent(text: str) -> str:
    return textwrap.dedent(text).strip()
