"""A plugin that calls ``sys.exit()`` at import is a broken plugin, not the end of ``unet``.

The plugin is a real distribution, built and installed with ``pip install --target`` into a
temporary folder that only the subprocesses see (through PYTHONPATH), so the project's own
environment is never changed. Its loss module calls ``sys.exit(3)`` at import, its hook module
raises a bare ``BaseException``, and a second loss has no ``__call__`` (a contract break).
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_train_support import (
    reference_config,
    run_unet,
    subprocess_env,
    tiny,
    write_config,
)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "unet-plugin-exits"
version = "0.1.0"

[tool.setuptools]
packages = ["unet_plugin_exits"]

[project.entry-points."unet.losses"]
ExitingLoss = "unet_plugin_exits.exiting:ExitingLoss"
UncallableLoss = "unet_plugin_exits.uncallable:UncallableLoss"

[project.entry-points."unet.hooks"]
exits = "unet_plugin_exits.hooks"
"""
UNCALLABLE = """\
from unet_core.interfaces import ComponentConfig


class UncallableLoss:
    class Config(ComponentConfig):
        pass
"""


@pytest.fixture(scope="module")
def exits_target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("exits-src")
    pkg = src / "unet_plugin_exits"
    pkg.mkdir()
    (src / "pyproject.toml").write_text(PYPROJECT)
    (pkg / "__init__.py").write_text("")
    (pkg / "exiting.py").write_text("import sys\n\nsys.exit(3)\n")
    (pkg / "hooks.py").write_text("raise BaseException('hook module gives up')\n")
    (pkg / "uncallable.py").write_text(UNCALLABLE)
    target = tmp_path_factory.mktemp("exits-target")
    offline = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", *offline,
         "--target", str(target), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert (target / "unet_plugin_exits-0.1.0.dist-info" / "entry_points.txt").is_file()
    return target


def test_plugins_list_reports_an_exiting_plugin_as_broken(exits_target: Path) -> None:
    env = subprocess_env(plugin_path=exits_target)
    proc = run_unet("plugins", "list", "--long", "--check", "--kind", "losses", env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # broken components fail the check
    rows = proc.stdout
    assert re.search(
        r"^ExitingLoss\s+losses\s+unet-plugin-exits\s+0\.1\.0\s+broken: import of "
        r"unet_plugin_exits\.exiting:ExitingLoss failed: the module called sys\.exit\(3\)$",
        rows,
        re.M,
    ), rows
    assert re.search(
        r"^UncallableLoss\s+.*broken: it does not meet the loss contract .*its instances are "
        r"not callable$",
        rows,
        re.M,
    ), rows
    assert re.search(r"^DiceLoss\s+losses\s+unet-core\s+\S+\s+ok$", rows, re.M)


def test_naming_an_exiting_plugin_is_one_paragraph_plugin_error(
    exits_target: Path, tmp_path: Path
) -> None:
    config = reference_config(tmp_path / "ck")
    config["loss"] = {"name": "ExitingLoss"}
    path = write_config(config, tmp_path / "exits.yml")
    proc = run_unet("config", "validate", str(path), env=subprocess_env(plugin_path=exits_target))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in err and "\n\n" not in err
    assert "ExitingLoss" in err and "unet-plugin-exits 0.1.0 is broken" in err
    assert "the module called sys.exit(3)" in err
    assert "Fix or uninstall unet-plugin-exits" in err


def test_training_with_other_components_still_works(exits_target: Path, tmp_path: Path) -> None:
    config = tiny(reference_config(tmp_path / "ck"), iterations=2, every=2)
    path = write_config(config, tmp_path / "train.yml")
    env = subprocess_env(plugin_path=exits_target)
    proc = run_unet("train", "--config", str(path), env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Finished after 2 iterations" in proc.stdout
    assert "skipping broken hook module 'exits'" in proc.stderr
    assert "BaseException: hook module gives up" in proc.stderr
    assert (tmp_path / "ck" / "last_checkpoint.pytorch").is_file()


def test_debug_shows_where_a_plugin_named_in_a_config_failed_to_import(tmp_path: Path) -> None:
    """`unet --debug config validate` shows the plugin's own file and line (the cause of the
    config problem); without --debug, one paragraph and no traceback."""
    info = tmp_path / "brokenplug-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenplug\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[unet.losses]\nBrokenLoss = brokenplug_mod:BrokenLoss\n"
    )
    (tmp_path / "brokenplug_mod.py").write_text("import os\n\nimport a_dependency_not_installed\n")
    config = tmp_path / "c.yml"
    config.write_text("model: {name: UNet3D, in_channels: 1, out_channels: 1}\n"
                      "loss: {name: BrokenLoss}\n")  # fmt: skip
    env = subprocess_env(plugin_path=tmp_path)
    plain = run_unet("config", "validate", "--no-files", str(config), env=env)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert "loss.name (line 2): The loss 'BrokenLoss' from brokenplug 1.0 is broken" in plain.stderr
    debug = run_unet("--debug", "config", "validate", "--no-files", str(config), env=env)
    assert debug.returncode == 2
    assert f'File "{tmp_path / "brokenplug_mod.py"}", line 3' in debug.stderr, debug.stderr
    assert "No module named 'a_dependency_not_installed'" in debug.stderr
