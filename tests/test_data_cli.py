"""``unet data check``: the report on real files and each problem it must catch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml

from unet_core.cli.main import main


def write_config(path: Path, loaders: dict[str, Any], **top: Any) -> Path:
    data = {
        "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "f_maps": 8},
        "loss": {"name": "BCEDiceLoss"},
        "loaders": {"num_workers": 0, **loaders},
        **top,
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def section(files: list[Any], label: list[dict[str, Any]] | None = None, **builder: Any) -> dict:
    spec = {
        "name": "FilterSliceBuilder",
        "patch_shape": [32, 64, 64],
        "stride_shape": [32, 64, 64],
        "threshold": 0.05,
        **builder,
    }
    label = label or [{"name": "BlobsToMask"}, {"name": "ToTensor", "expand_dims": True}]
    return {
        "file_paths": [str(f) for f in files],
        "slice_builder": spec,
        "transformer": {
            "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
            "label": label,
        },
    }


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


def test_report_on_real_files(sample_data: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(
        tmp_path / "ok.yml",
        {
            "train": section(
                [sample_data / "nuclei3d_train_a.h5"],
                threshold=0.6,
                slack_acceptance=0.2,
                patch_shape=[64, 64, 64],
                stride_shape=[32, 32, 32],
            ),
            "val": section([sample_data / "nuclei3d_train_b.h5"]),
        },
    )
    code, out, err = run(["data", "check", "--config", str(cfg)], capsys)
    assert code == 0, err
    flat = " ".join(out.split())
    assert "nuclei3d_train_a.h5" in out and "nuclei3d_train_b.h5" in out
    assert "(100, 100, 100) uint8 [2, 255]" in flat  # shape, dtype, value range
    assert "55 values in [0, 54]" in flat and "33 values in [0, 32]" in flat  # label classes
    assert "6/27 (22% kept)" in flat  # threshold 0.6 keeps 1 patch + slack 0.2 draws
    assert "16/16 (100% kept)" in flat  # (both counts as the reference computes them)
    assert "no problems found" in out


def test_every_problem_is_listed(sample_data: Path, tmp_path: Path, capsys) -> None:
    mismatch = tmp_path / "mismatch.h5"
    with h5py.File(mismatch, "w") as f:
        f["raw"], f["label"] = np.zeros((40, 70, 70), np.uint8), np.zeros((40, 70, 71), np.uint8)
    int_label = [{"name": "ToTensor", "expand_dims": False, "dtype": "int64"}]
    cfg = write_config(
        tmp_path / "bad.yml",
        {
            "train": section(
                [sample_data / "nuclei3d_train_a.h5", mismatch, sample_data / "ovule_boundary.h5"]
            ),
            "val": section(
                [sample_data / "nuclei3d_train_b.h5", tmp_path / "missing.h5"],
                label=int_label,
                threshold=0.0,
            ),
        },
    )
    code, out, err = run(["data", "check", "--config", str(cfg)], capsys)
    assert code != 0
    flat = " ".join(out.split())
    # every file gets its row; one bad file does not hide the problems of the others
    assert "mismatch.h5: In" in flat and "must match" in flat
    assert "missing.h5" in flat and "does not exist" in flat
    assert "does not fit loss BCEDiceLoss" in flat  # int class labels vs a mask loss
    assert "problems in total" in " ".join(err.split())


def test_patch_too_big_and_filter_keeping_nothing(
    sample_data: Path, tmp_path: Path, capsys
) -> None:
    cfg = write_config(
        tmp_path / "c.yml",
        {
            "train": section([sample_data / "ovule_boundary.h5"], patch_shape=[40, 64, 64]),
            "val": section(
                [sample_data / "nuclei3d_train_b.h5"], threshold=0.95, slack_acceptance=0.0
            ),
        },
    )
    code, out, _ = run(["data", "check", "--config", str(cfg)], capsys)
    flat = " ".join(out.split())
    assert code != 0
    assert "along Z (32 < 40)" in flat
    assert "kept none of the 16 patches" in flat


def test_model_channels_and_overlap(sample_data: Path, tmp_path: Path, capsys) -> None:
    cfg = write_config(
        tmp_path / "d.yml",
        {"train": section([sample_data]), "val": section([sample_data / "ovule_boundary.h5"])},
        model={"name": "UNet3D", "in_channels": 2, "out_channels": 1, "f_maps": 8},
    )
    code, out, _ = run(["data", "check", "--config", str(cfg)], capsys)
    flat = " ".join(out.split())
    assert code != 0
    assert "both contain" in flat and "ovule_boundary.h5" in flat
    assert "model.in_channels is 2" in flat


def test_invalid_config_is_one_paragraph(tmp_path: Path, capsys) -> None:
    cfg = write_config(tmp_path / "e.yml", {"train": section(["x.h5"], patch_shape=[32, 32, 32])})
    code, _, err = run(["data", "check", "--config", str(cfg)], capsys)
    assert code != 0 and "Traceback" not in err
    assert "skip_shape_check" in err
