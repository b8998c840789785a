"""The repository carries its sample data: checksums, licences, paths, and a clean copy.

A plain clone with nothing beside it must run the real-data tests: the last test copies only
the git-tracked files into a temporary folder and runs real-data tests there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "examples" / "data"
#: folders the scenario preparation scripts write into (git-ignored, not part of the samples)
PREPARED = ("ovule", "dsb2018", "multiclass")


def _sums() -> dict[str, str]:
    lines = (SAMPLES / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split() for line in lines if line.strip())}


def _tracked() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} is not a git checkout: these tests check what the repository holds")
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
    )
    return [p for p in out.stdout.split("\0") if p and (ROOT / p).is_file()]


def test_samples_match_their_checksums_and_readme() -> None:
    sums = _sums()
    assert sorted(sums) == [
        "nuclei2d_labels.tif",
        "nuclei2d_raw.tif",
        "nuclei3d_train_a.h5",
        "nuclei3d_train_b.h5",
        "ovule_boundary.h5",
    ]
    readme = (SAMPLES / "README.md").read_text()
    for name, digest in sums.items():
        assert hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest() == digest, name
        assert f"| `{name}` | `{digest}` |" in readme, f"README lacks the sha256 of {name}"
    # the licences whose notices must travel with the copies
    assert "MIT License" in (SAMPLES / "LICENSE-plant-seg.txt").read_text()
    assert "BSD 3-Clause License" in (SAMPLES / "LICENSE-stardist.txt").read_text()
    assert "LICENSE-plant-seg.txt" in readme and "LICENSE-stardist.txt" in readme


def test_samples_are_tracked_and_nothing_refers_to_the_outside_folder() -> None:
    tracked = _tracked()
    for name in [*_sums(), "README.md", "LICENSE-plant-seg.txt", "LICENSE-stardist.txt"]:
        assert f"examples/data/{name}" in tracked, f"examples/data/{name} is not in git"
    outside = ("../" + "shared", '"' + "shared" + '" / "data"', '"' + "shared" + '" / "compat"')
    offenders = []
    for rel in tracked:
        try:
            text = (ROOT / rel).read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{rel}: {word}" for word in outside if word in text]
    assert not offenders, offenders


def _config_files(node: object) -> list[str]:
    """Every entry of a ``file_paths`` list anywhere in a config."""
    if isinstance(node, dict):
        found = [str(p) for p in node.get("file_paths", []) or []]
        return found + [f for key, value in node.items() for f in _config_files(value)]
    return []


def test_scenario_configs_read_the_samples_from_the_repository_root() -> None:
    """Run from the root as the docs say, every sample path in a shipped config exists."""
    paths = {
        path
        for config in sorted((ROOT / "examples" / "configs").glob("*/*.yml"))
        for path in _config_files(yaml.safe_load(config.read_text()))
    }
    samples = {p for p in paths if p.startswith("examples/data/")}
    direct = {p for p in samples if p.split("/")[2] not in PREPARED}
    assert direct, "no scenario reads the samples directly"
    for path in direct:
        assert (ROOT / path).is_file(), f"{path} (relative to the repository root) is missing"
    assert paths <= samples | {p for p in paths if p.startswith("runs/")}, paths - samples


def test_a_clean_copy_of_the_repository_runs_real_data_tests(tmp_path: Path) -> None:
    """Only the tracked files, nothing beside them: imports and real-data tests pass there."""
    copy = tmp_path / "clone"
    for rel in _tracked():
        (copy / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, copy / rel)
    assert not (tmp_path / "shared").exists()
    env = {
        **os.environ,
        "PYTHONPATH": str(copy),
        "CI": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import unet_core, unet_plugins; print(unet_core.__file__)"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(copy), probe.stdout
    tests = [
        "tests/test_data_io.py",
        "tests/test_train_loop.py::test_resume_continues_exactly",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *tests],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "passed" in summary and "skipped" not in summary, summary
    assert int(summary.split(" passed")[0].split()[-1]) >= 20, summary
