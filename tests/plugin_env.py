"""A fresh virtual environment that sees the host's packages, with a test plugin installed.

The environment is created without pip and sees the host environment (unet-core, torch)
through a ``.pth`` file, so nothing is downloaded; the plugin is built into a wheel from a copy
of its source (setuptools writes build/ and *.egg-info in place).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class PluginEnv:
    python: Path
    wheel: Path
    tmp: Path


def _env(extra_path: Sequence[Path] = (), **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "UNET_DEBUG")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUTF8="1", COLUMNS="200")
    env.update(extra)
    paths = [str(p) for p in extra_path] + [p for p in [env.get("PYTHONPATH")] if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _run(args: list, *, extra_path: Sequence[Path] = (), check: bool = True, **extra: str):
    proc = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        env=_env(extra_path, **extra),
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _pip_build(src: Path, *pip_args: str) -> list[str]:
    """pip arguments that build ``src`` with the host's setuptools when it has one."""
    offline = importlib.util.find_spec("setuptools") is not None
    return [*pip_args, "--no-deps", *(["--no-build-isolation"] if offline else []), str(src)]


def plugin_env(tmp: Path, source: Path, module: str) -> PluginEnv:
    """A venv under ``tmp`` and the wheel of the package at ``source`` (not yet installed)."""
    src = tmp / "src"
    shutil.copytree(source, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info",
                                                                "__pycache__"))  # fmt: skip
    _run([sys.executable, "-m", "pip", *_pip_build(src, "wheel", "-q", "-w", str(tmp / "dist"))])
    (wheel,) = (tmp / "dist").glob(f"{module}-*.whl")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    host_sites = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        host_sites.append(site.getusersitepackages())
    lines = [f"import site; site.addsitedir({p!r})" for p in host_sites if os.path.isdir(p)]
    Path(purelib.stdout.strip(), "_unet_host_site.pth").write_text("\n".join(lines) + "\n")
    return PluginEnv(python, wheel, tmp)
