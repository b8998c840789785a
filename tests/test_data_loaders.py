"""DataLoaders from a config: spawn workers, seeding, overlap check, DDP sampler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from unet_core.config.schema import ExperimentConfig
from unet_core.engine.data import build_loaders, build_test_datasets
from unet_core.errors import ConfigError

RAW_T = [
    {"name": "Standardize"},
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    {"name": "ToTensor", "expand_dims": True},
]
LABEL_T = [
    {"name": "RandomFlip"},
    {"name": "RandomRotate90"},
    {"name": "BlobsToMask"},
    {"name": "ToTensor", "expand_dims": False},
]


def config(train: list[Any], val: list[Any], workers: int = 0, **loaders: Any) -> ExperimentConfig:
    def section(files: list[Any]) -> dict[str, Any]:
        return {
            "file_paths": [str(f) for f in files],
            "slice_builder": {
                "name": "SliceBuilder",
                "patch_shape": [32, 64, 64],
                "stride_shape": [34, 36, 36],
            },
            "transformer": {"raw": RAW_T, "label": LABEL_T},
        }

    data = {
        "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1},
        "loaders": {
            "num_workers": workers,
            "batch_size": 2,
            "train": section(train),
            "val": section(val),
            **loaders,
        },
    }
    return ExperimentConfig.model_validate(data)


def test_spawn_workers_load_real_data(sample_data: Path) -> None:
    cfg = config(
        [sample_data / "nuclei3d_train_a.h5"],
        [sample_data / "nuclei3d_train_b.h5"],
        workers=2,
        dataset="LazyHDF5Dataset",
    )
    loaders = build_loaders(cfg, seed=7, multiprocessing_context="spawn")
    train = loaders["train"]
    assert train.num_workers == 2 and train.persistent_workers
    assert train.multiprocessing_context.get_start_method() == "spawn"
    seen = 0
    for raw, label in train:
        assert raw.shape[1:] == (1, 32, 64, 64) and label.shape[1:] == (1, 32, 64, 64)
        assert set(torch.unique(label).tolist()) <= {0.0, 1.0}
        seen += raw.shape[0]
    assert seen == len(train.dataset) == 3 * 2 * 2


def test_seed_fixes_order_and_augmentation(sample_data: Path) -> None:
    cfg = config([sample_data / "nuclei3d_train_a.h5"], [sample_data / "nuclei3d_train_b.h5"])

    def epoch(seed: int) -> list[torch.Tensor]:
        # num_workers 0: samples draw their augmentation seed from torch's global RNG, which
        # the trainer seeds with manual_seed; the loader's generator fixes the order
        torch.manual_seed(seed)
        return [raw for raw, _ in build_loaders(cfg, seed=seed)["train"]]

    a, b, c = epoch(3), epoch(3), epoch(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    loaders = build_loaders(cfg, seed=3)
    first = [raw for raw, _ in loaders["train"]]
    second = [raw for raw, _ in loaders["train"]]  # next epoch: new order / augmentation
    assert not all(torch.equal(x, y) for x, y in zip(first, second))
    val = loaders["val"]
    assert [r.shape[0] for r, _ in val] == [2] * 6  # 12 patches, not shuffled
    assert not val.pin_memory  # CPU


def test_train_val_overlap_after_expansion(
    sample_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "data"
    link.symlink_to(sample_data)
    monkeypatch.chdir(tmp_path)
    # the same file once through the folder and once through a relative symlinked path
    cfg = config([sample_data], ["data/nuclei3d_train_b.h5"])
    with pytest.raises(ConfigError) as err:
        build_loaders(cfg)
    assert "nuclei3d_train_b.h5" in str(err.value) and "loaders.val.file_paths" in str(err.value)


def test_distributed_sampler(sample_data: Path, tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    cfg = config([sample_data / "nuclei3d_train_a.h5"], [sample_data / "nuclei3d_train_b.h5"])
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        loaders = build_loaders(cfg, distributed=True, seed=0)
    finally:
        dist.destroy_process_group()
    assert isinstance(loaders["train"].sampler, DistributedSampler)
    assert loaders["train"].sampler.shuffle and not loaders["val"].sampler.shuffle


def test_test_loader(sample_data: Path) -> None:
    data = {
        "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1},
        "loaders": {
            "num_workers": 0,
            "batch_size": 4,
            "test": {
                "file_paths": [
                    str(sample_data / "nuclei3d_train_a.h5"),
                    str(sample_data / "nuclei3d_train_b.h5"),
                ],
                "slice_builder": {
                    "name": "SliceBuilder",
                    "patch_shape": [64, 64, 64],
                    "stride_shape": [48, 48, 48],
                    "halo_shape": [4, 8, 8],
                },
                "transformer": {
                    "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}]
                },
            },
        },
    }
    cfg = ExperimentConfig.model_validate(data)
    datasets = build_test_datasets(cfg)
    assert [Path(d.file_path).name for d in datasets] == [
        "nuclei3d_train_a.h5",
        "nuclei3d_train_b.h5",
    ]
