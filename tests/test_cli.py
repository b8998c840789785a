"""The `unet` CLI as a user runs it: subprocesses, exit codes, no traceback, no torch at start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unet_core.cli.aliases import translate

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "configs" / "train_minimal.yml"
UNET = [sys.executable, "-m", "unet_core.cli.main"]


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([*UNET, *args], capture_output=True, text=True, cwd=cwd, timeout=120)


PROBE = """
import sys
sys.argv = ["unet", *{args!r}]
from unet_core.cli.main import cli
try:
    cli.main(standalone_mode=False)
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m == "torch" or m.startswith("unet_plugins."))
print("HEAVY:", heavy)
"""


@pytest.mark.parametrize(
    "args", [("--help",), ("plugins", "list"), ("plugins", "list", "-k", "models")]
)
def test_help_and_plugin_list_import_neither_torch_nor_plugins(args):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(args=list(args))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("HEAVY: []"), out.stdout[-500:]


def test_version():
    out = run("--version")
    assert out.returncode == 0 and "0.1.0" in out.stdout


def test_plugins_list_shows_builtins_with_status():
    out = run("plugins", "list", "--kind", "optimizers")
    assert out.returncode == 0, out.stderr
    for name in ("Adam", "AdamW", "SGD", "RMSprop"):
        assert name in out.stdout
    assert "unet-core" in out.stdout and "ok" in out.stdout
    assert "0 broken" in out.stdout
    sched = run("plugins", "list", "*LR*", "--check")
    assert "ReduceLROnPlateau" in sched.stdout and "MultiStepLR" in sched.stdout
    assert "0 broken" in sched.stdout


def test_plugins_show_lists_parameters():
    out = run("plugins", "show", "Adam")
    assert out.returncode == 0, out.stderr
    assert "learning_rate" in out.stdout and "0.001" in out.stdout and "betas" in out.stdout
    bad = run("plugins", "show", "Adma")
    assert bad.returncode == 2 and "did you mean" in bad.stderr and "`Adam`" in bad.stderr


def test_config_validate_ok_and_typo(tmp_path):
    ok = run("config", "validate", str(MINIMAL))
    assert ok.returncode == 0, ok.stderr
    bad_cfg = tmp_path / "bad.yml"
    bad_cfg.write_text(MINIMAL.read_text().replace("learning_rate: 0.0002", "learning_rat: 0.1"))
    bad = run("config", "validate", str(bad_cfg))
    assert bad.returncode == 2
    line = bad_cfg.read_text().splitlines().index("  learning_rat: 0.1") + 1
    assert f"optimizer.learning_rat (line {line})" in bad.stderr and "`learning_rate`" in bad.stderr
    assert "Traceback" not in bad.stderr
    debug = run("--debug", "config", "validate", str(bad_cfg))
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_config_validate_with_set_override():
    out = run("config", "validate", str(MINIMAL), "--set", "trainer.max_num_iterations=oops")
    assert out.returncode == 2 and "(from --set)" in out.stderr


def test_config_schema_written_to_file(tmp_path):
    target = tmp_path / "schema.json"
    out = run("config", "schema", "-o", str(target))
    assert out.returncode == 0, out.stderr
    assert '"UNet3D"' in target.read_text()


def test_reference_aliases_translate_flags():
    argv = [
        "--config",
        "c.yml",
        "--model_path",
        "/m/best.pytorch",
        "--loaders.test.file_paths",
        "a.h5",
        "b.h5",
        "--loaders.test.slice_builder.patch_shape",
        "32",
        "64",
        "64",
        "--loaders.output_dir",
        "/out",
    ]
    assert translate(argv) == [
        "--config",
        "c.yml",
        "--set",
        "model_path=/m/best.pytorch",
        "--set",
        "loaders.test.file_paths=[a.h5, b.h5]",
        "--set",
        "loaders.test.slice_builder.patch_shape=[32, 64, 64]",
        "--set",
        "loaders.output_dir=/out",
    ]
