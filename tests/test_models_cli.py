"""``unet models summary``: the numbers a user needs to pick a model and a patch."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from unet_core.cli.main import cli
from unet_core.cli.models import describe_model, valid_sizes
from unet_core.errors import ConfigError, UsageError


def run(*args: str) -> tuple[str, BaseException | None]:
    result = CliRunner().invoke(cli, ["models", "summary", *args])
    return result.output, result.exception


def test_summary_by_name() -> None:
    out, exc = run("--name", "UNet3D", "--set", "f_maps=32", "--patch", "80", "170", "170")
    assert exc is None, out
    assert "4,081,267" in out  # the reference's count for f_maps 32 (see test_models)
    assert "Receptive field  100 x 100 x 100 voxels" in out
    assert "8 x 8 x 8 per axis (nearest valid patch 80 x 168 x 168)" in out
    assert "Output           1 x 1 x 80 x 170 x 170" in out
    assert "not multiples of [8, 8, 8]" in out


def test_summary_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "train.yml"
    cfg.write_text(
        "model: {name: UNet2D, in_channels: 3, out_channels: 2, f_maps: [8, 16, 32],"
        " layer_order: bcr, final_sigmoid: false}\n"
    )
    out, exc = run("--config", str(cfg), "--patch", "1", "64", "64")
    assert exc is None, out
    assert "UNet2D (2D)" in out and "Input            1 x 3 x 64 x 64" in out
    assert "Output           1 x 2 x 64 x 64" in out


def test_summary_rejects_bad_patch_and_missing_model() -> None:
    _, exc = run("--name", "UNet2D", "--patch", "4", "64", "64")
    assert isinstance(exc, ConfigError) and "z = 4" in str(exc)
    _, exc = run()
    assert isinstance(exc, UsageError)
    _, exc = run("--name", "UNet3D", "--set", "layer_order=xyz")
    assert isinstance(exc, ConfigError) and "layer_order" in str(exc)


def test_memory_numbers_are_hand_checkable() -> None:
    """UNet3D f_maps 4, 2 levels, no norm, 16^3: every activation is countable by hand."""
    spec = {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "f_maps": 4,
            "num_levels": 2, "layer_order": "cr"}  # fmt: skip
    r = describe_model(spec, [16, 16, 16])
    voxels = 16**3
    # the largest tensor is the decoder's concat: (4 + 8 channels) at full resolution, fp32
    assert r["largest_activation_bytes"] == 12 * voxels * 4
    assert r["output_shape"] == [1, 1, 16, 16, 16]
    # convs with bias: enc0 1->2->4, enc1 4->4->8, dec0 (8+4)->4->4, final 4->1
    assert r["parameters"] == 56 + 220 + 436 + 872 + 1300 + 436 + 5
    # peak at the concat: skip (4 ch) + upsampled (8) + concat (12) + the bottleneck (8 ch at
    # 8^3 = 1 full-size channel); the caller's input is not counted
    assert r["inference_bytes"] == (4 + 8 + 12 + 1) * voxels * 4
    assert r["training_bytes"] > r["inference_bytes"]


@pytest.mark.parametrize(("m", "n", "want"), [(8, 170, [168, 176, 160]), (16, 5, [16, 32, 48])])
def test_valid_sizes(m: int, n: int, want: list[int]) -> None:
    assert valid_sizes(m, n) == want
