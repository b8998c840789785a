"""Packaging: every third-party import is declared, and the reference's script names warn when
the reference is installed beside us."""

from __future__ import annotations

import ast
import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("unet_core", "unet_plugins")


def _imported_modules() -> dict[str, list[str]]:
    """Top-level module -> files of our packages that import it (any nesting, lazy included)."""
    found: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def _declared() -> set[str]:
    """Normalised names of the distributions pyproject declares (core and non-dev extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra, items in project.get("optional-dependencies", {}).items():
        if extra != "dev":
            specs += items
    return {_normal(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0]) for spec in specs}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_third_party_import_is_declared() -> None:
    owners = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    declared = _declared()
    missing = {}
    for module, files in _imported_modules().items():
        if module in stdlib or module in PACKAGES:
            continue
        distributions = {_normal(d) for d in owners.get(module, [])} - {"unet-core"}
        if not distributions:
            missing[module] = f"not installed, imported by {files[0]}"
        elif not distributions & declared:
            missing[module] = f"{sorted(distributions)} undeclared, imported by {files[0]}"
    assert not missing, f"declare these in pyproject.toml (dependencies or an extra): {missing}"


def test_declared_check_sees_an_undeclared_import() -> None:
    """The scan above must be able to fail: a module of no declared distribution is caught."""
    owners = metadata.packages_distributions()
    assert "pytest" in owners and _normal(owners["pytest"][0]) not in _declared()
    assert "imageio" in _imported_modules() and "imageio" in _declared()


def _alias(tmp_path: Path, *, reference_importable: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if reference_importable:  # a real importable package of that name, as pip leaves it
        fake = tmp_path / "site"
        (fake / "pytorch3dunet").mkdir(parents=True)
        (fake / "pytorch3dunet" / "__init__.py").write_text("")
        env["PYTHONPATH"] = os.pathsep.join([str(fake), env.get("PYTHONPATH", "")])
    code = "from unet_core.cli.aliases import predict3dunet; predict3dunet()"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(tmp_path / "missing.yml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_alias_warns_once_when_the_reference_is_importable(tmp_path: Path) -> None:
    run = _alias(tmp_path, reference_importable=True)
    warnings = [line for line in run.stderr.splitlines() if "pytorch-3dunet is installed" in line]
    assert len(warnings) == 1, run.stderr
    assert "python -m pytorch3dunet.predict --config FILE" in warnings[0]
    assert "missing.yml" in run.stderr  # then the command itself runs (and reports its error)
    plain = _alias(tmp_path, reference_importable=False)
    assert "pytorch-3dunet is installed" not in plain.stderr
