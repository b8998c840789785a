"""`unet export --format torchscript|onnx`: parity with the network, dynamic sizes, atomicity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_support import run_here as run_cli_here
from export_support import train_tiny

from unet_core.errors import ExportError
from unet_core.exchange.source import load_export_source


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return train_tiny(tmp_path_factory.mktemp("export"))


def _network_and_input(checkpoint: Path, shape=(1, 1, 16, 40, 24)):
    source = load_export_source(checkpoint)
    x = np.random.default_rng(3).standard_normal(shape).astype(np.float32)
    with torch.no_grad():
        return source.model(torch.from_numpy(x)).numpy(), x


def test_torchscript_export_runs_like_the_checkpoint_on_another_size(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.pt"
    code, stdout, err = run_cli_here(
        capsys, "export", str(checkpoint), "--format", "torchscript", "-o", str(out)
    )
    assert code == 0, err
    assert "max difference" in stdout
    expected, x = _network_and_input(checkpoint)  # not the export's own test size
    module = torch.jit.load(str(out))
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5
    assert 0 < got.min() and got.max() < 1  # the final sigmoid is part of the export


def test_onnx_export_runs_in_onnxruntime_with_dynamic_axes(checkpoint, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    code, _, err = run_cli_here(
        capsys, "export", str(checkpoint), "--format", "onnx", "-o", str(out)
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no side files
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for shape in ((1, 1, 16, 40, 24), (2, 1, 8, 16, 32)):
        expected, x = _network_and_input(checkpoint, shape)
        got = session.run(None, {"input": x})[0]
        assert np.abs(got - expected).max() < 1e-4


class _Drifting(torch.nn.Module):
    """Output depends on Python state a trace freezes: the export cannot be faithful."""

    spatial_dims = 3

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x * self.calls


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_an_export_that_differs_from_the_network_is_refused_and_not_written(tmp_path, fmt):
    x = np.ones((1, 1, 4, 8, 8), np.float32)
    out = tmp_path / f"model.{fmt}"
    if fmt == "torchscript":
        from unet_core.exchange.torchscript import export_torchscript

        with pytest.raises(ExportError, match="differs from the network"):
            export_torchscript(_Drifting(), x, out)
    else:
        pytest.importorskip("onnxruntime")
        from unet_core.exchange.onnx_export import export_onnx

        with pytest.raises(ExportError, match="differs from the network"):
            export_onnx(_Drifting(), x, out)
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_an_existing_output_is_kept_without_overwrite(checkpoint, tmp_path, capsys):
    out = tmp_path / "model.pt"
    out.write_bytes(b"the user's file")
    before = (hashlib.sha256(out.read_bytes()).hexdigest(), out.stat().st_mtime_ns)
    code, _, err = run_cli_here(
        capsys, "export", str(checkpoint), "--format", "torchscript", "-o", str(out)
    )
    assert code != 0
    assert "already exists" in err and "--overwrite" in err and "Traceback" not in err
    assert (hashlib.sha256(out.read_bytes()).hexdigest(), out.stat().st_mtime_ns) == before


def test_a_checkpoint_without_config_asks_for_one(tmp_path, capsys):
    from unet_core import registry

    model = registry.create(
        "models",
        {
            "name": "UNet3D",
            "in_channels": 1,
            "out_channels": 1,
            "f_maps": 4,
            "num_levels": 2,
            "num_groups": 2,
        },
    )
    bare = tmp_path / "reference.pytorch"
    torch.save({"model_state_dict": model.state_dict()}, bare)
    code, _, err = run_cli_here(
        capsys, "export", str(bare), "--format", "torchscript", "-o", str(tmp_path / "m.pt")
    )
    assert code != 0
    assert "holds no config" in err and "--config" in err
    assert not (tmp_path / "m.pt").exists()


def test_export_sample_errors_are_one_paragraph_and_any_format_serves(checkpoint, tmp_path, capsys):
    """--sample: a missing or broken file, or a 2D image for a 3D model, is named in a clear
    error with nothing written; a TIFF volume serves as well as HDF5; -o is never an input."""
    import h5py
    import tifffile

    out = tmp_path / "m.pt"
    broken = tmp_path / "broken.h5"
    broken.write_text("not HDF5")
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as f:
        f["raw"] = np.zeros((40, 40), np.uint8)
    cases = {
        tmp_path / "missing.h5": "missing.h5 (--sample) does not exist",
        broken: "Cannot open",
        flat: "holds a 2D image (1, 40, 40) under 'raw', but the model is 3D",
    }
    for sample, expected in cases.items():
        code, _, err = run_cli_here(
            capsys, "export", str(checkpoint), "--format", "torchscript", "-o", str(out),
            "--sample", str(sample),
        )  # fmt: skip
        assert code != 0 and expected in err and "Traceback" not in err, err
        assert str(sample) in err and not out.exists()
    tif = tmp_path / "vol.tif"
    tifffile.imwrite(tif, np.random.default_rng(0).integers(0, 255, (20, 48, 40), np.uint8))
    code, stdout, err = run_cli_here(
        capsys, "export", str(checkpoint), "--format", "torchscript", "-o", str(out),
        "--sample", str(tif),
    )  # fmt: skip
    assert code == 0 and "on (1, 1, 20, 48, 40)" in stdout, err
    before = tif.read_bytes()
    for output in (str(tif), str(tmp_path / "new") + "/"):
        code, _, err = run_cli_here(
            capsys, "export", str(checkpoint), "--format", "torchscript", "-o", output,
            "--sample", str(tif), "--overwrite",
        )  # fmt: skip
        assert code != 0 and ("is --sample" in err or "is a folder" in err), err
    assert tif.read_bytes() == before and not (tmp_path / "new").exists()


def test_scripted_export_compiles_the_default_unet(checkpoint, tmp_path, capsys):
    """--torchscript-mode script: the input check is left out of the compiled graph (it used
    imports and f-strings TorchScript cannot compile), the rest equals the network."""
    out = tmp_path / "scripted.pt"
    code, stdout, err = run_cli_here(
        capsys, "export", str(checkpoint), "--format", "torchscript", "--torchscript-mode",
        "script", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    expected, x = _network_and_input(checkpoint)
    module = torch.jit.load(str(out))
    with torch.no_grad():
        assert np.abs(module(torch.from_numpy(x)).numpy() - expected).max() < 1e-5
