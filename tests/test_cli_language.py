"""One CLI language: --device wherever a model runs, -o for outputs, -v/-q on the group, and
progress lines from every long command when stderr is not a terminal."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from cli_support import run_here


@pytest.mark.parametrize("command", [("train",), ("predict",), ("demo",)])
def test_device_option_wherever_a_model_runs(capsys, command) -> None:
    code, out, _ = run_here(capsys, *command, "--help")
    assert code == 0 and "--device DEVICE" in out and "cpu, cuda, cuda:N or mps" in out


@pytest.mark.parametrize(
    "command", [("predict",), ("demo",), ("export",), ("config", "schema"), ("data", "convert")]
)
def test_outputs_are_dash_o(capsys, command) -> None:
    code, out, _ = run_here(capsys, *command, "--help")
    assert code == 0 and "-o, --output" in out


def test_group_takes_verbose_and_quiet(capsys) -> None:
    code, out, _ = run_here(capsys, "--help")
    assert code == 0 and "-v, --verbose" in out and "-q, --quiet" in out
    assert "_UNET_COMPLETE=bash_source unet" in out


def test_data_convert_reports_blocks_and_quiet_silences_it(tmp_path, capsys) -> None:
    pytest.importorskip("zarr")
    source = tmp_path / "vol.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset(
            "raw", data=np.arange(40 * 300 * 300, dtype=np.uint8).reshape(40, 300, 300)
        )
    code, _, err = run_here(
        capsys, "data", "convert", str(source), str(tmp_path / "a.ome.zarr"), "--dataset", "raw"
    )
    assert code == 0, err
    lines = err.splitlines()
    assert any(
        line.startswith("convert: file 1/1 raw (") and "blocks)" in line for line in lines
    ), err
    assert any(" done: " in line and "blocks/s" in line for line in lines), err
    code, _, err = run_here(
        capsys,
        "-q",
        "data",
        "convert",
        str(source),
        str(tmp_path / "b.ome.zarr"),
        "--dataset",
        "raw",
    )
    assert code == 0 and "convert:" not in err
