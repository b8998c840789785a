"""Lint, types and layering rules, run by the same `pytest` as everything else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the dev extra (pip install -e '.[dev]')")
    return found


def test_ruff_clean():
    out = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]


def test_mypy_clean_on_unet_core():
    out = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]


def test_core_never_imports_builtin_plugins():
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "unet_core").rglob("*.py")
        if re.search(r"^\s*(import|from)\s+unet_plugins", p.read_text(), re.M)
    ]
    assert offenders == []


def test_checkpoints_load_with_weights_only():
    offenders = []
    for p in [*(ROOT / "unet_core").rglob("*.py"), *(ROOT / "unet_plugins").rglob("*.py")]:
        for line in p.read_text().splitlines():
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{p.relative_to(ROOT)}: {line.strip()}")
    assert offenders == []


def test_yaml_is_read_safely():
    offenders = [
        str(p.relative_to(ROOT))
        for p in [*(ROOT / "unet_core").rglob("*.py"), *(ROOT / "unet_plugins").rglob("*.py")]
        if re.search(r"yaml\.load\(|yaml\.unsafe_load|(?<![.\w])eval\(", p.read_text())
    ]
    assert offenders == []
