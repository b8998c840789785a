"""The example third-party plugin, really pip-installed into a fresh virtual environment.

The environment is created without pip and sees the host environment (unet-core, torch) through
a ``.pth`` file, so nothing is downloaded. The example is built into a wheel once, installed with
pip, used through the ``unet`` CLI and the registry in subprocesses, and uninstalled with pip.
A second, deliberately broken distribution is pip-installed into a ``--target`` folder to show
that a broken plugin and a name claimed twice are reported while everything else keeps working.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import site
import subprocess
import sys
import textwrap
import venv
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "unet-plugin-example"
DIST = "unet-plugin-example"


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


def _py(penv: PluginEnv, code: str, *, extra_path: Sequence[Path] = (), **extra: str) -> dict:
    """Run ``code`` in the plugin environment; it prints one JSON object as its last line."""
    proc = _run([penv.python, "-c", textwrap.dedent(code)], extra_path=extra_path, **extra)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _unet(penv: PluginEnv, *args: str, extra_path: Sequence[Path] = (), check: bool = True):
    return _run([penv.python, "-m", "unet_core.cli.main", *args], extra_path=extra_path,
                check=check)  # fmt: skip


def _install(penv: PluginEnv) -> None:
    _run([penv.python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", penv.wheel])


@pytest.fixture(scope="module")
def penv(tmp_path_factory: pytest.TempPathFactory) -> PluginEnv:
    try:
        metadata.distribution(DIST)
        pytest.skip(f"{DIST} is installed in the test environment itself; uninstall it first")
    except metadata.PackageNotFoundError:
        pass
    tmp = tmp_path_factory.mktemp("plugin-env")
    src = tmp / "src"  # build from a copy: setuptools writes build/ and *.egg-info in place
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info",
                                                                "__pycache__"))  # fmt: skip
    _run([sys.executable, "-m", "pip", *_pip_build(src, "wheel", "-q", "-w", str(tmp / "dist"))])
    (wheel,) = (tmp / "dist").glob("unet_plugin_example-*.whl")

    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env_dir)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    host_sites = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        host_sites.append(site.getusersitepackages())
    lines = [f"import site; site.addsitedir({p!r})" for p in host_sites if os.path.isdir(p)]
    Path(purelib.stdout.strip(), "_unet_host_site.pth").write_text("\n".join(lines) + "\n")
    penv = PluginEnv(python, wheel, tmp)
    _install(penv)
    return penv


RECORDS = """
    import json, sys
    from unet_core import registry
    recs = sorted([r.kind, r.name, r.distribution, r.version, r.status]
                  for r in registry.records() if r.distribution == "unet-plugin-example")
    print(json.dumps({"records": recs, "torch_imported": "torch" in sys.modules}))
"""


def test_installed_plugin_is_listed_without_importing_it(penv: PluginEnv) -> None:
    out = _py(penv, RECORDS)
    assert out["records"] == [
        ["lr_schedulers", "WarmupCosine", DIST, "0.1.0", "ok"],
        ["optimizers", "Lion", DIST, "0.1.0", "ok"],
    ]
    assert out["torch_imported"] is False

    listing = _unet(penv, "plugins", "list").stdout
    assert re.search(rf"^Lion\s+optimizers\s+{DIST}\s+0\.1\.0\s+ok$", listing, re.M), listing
    assert re.search(rf"^WarmupCosine\s+lr_schedulers\s+{DIST}\s+0\.1\.0\s+ok$", listing, re.M)
    assert re.search(r"^Adam\s+optimizers\s+unet-core\s+", listing, re.M)

    shown = _unet(penv, "plugins", "show", "Lion").stdout
    assert f"from {DIST} 0.1.0" in shown
    for field in ("learning_rate", "betas", "weight_decay", "0.0001"):
        assert field in shown, field


CONFIG = """\
model:
  name: UNet3D
  in_channels: 1
  out_channels: 1
optimizer:
  name: Lion
  {lr_key}: 0.0001
  betas: [0.9, {beta2}]
  weight_decay: 0.01
lr_scheduler:
  name: WarmupCosine
  warmup_steps: {warmup}
  total_steps: 10
"""


def test_config_naming_the_plugin_validates_and_builds(penv: PluginEnv) -> None:
    path = penv.tmp / "good.yml"
    path.write_text(CONFIG.format(lr_key="learning_rate", beta2=0.99, warmup=2))

    out = _py(
        penv,
        f"""
        import json, torch
        from unet_core import registry
        from unet_core.config import load_config
        cfg = load_config({str(path)!r})  # validates every section, as `unet config validate`
        p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
        lion = registry.create("optimizers", {{**cfg.optimizer, "learning_rate": 0.1,
                               "weight_decay": 0.5}}, params=[p])
        trace = []
        for _ in range(2):
            p.grad = torch.tensor([0.5, -0.25, 0.0])
            lion.step()
            trace.append(p.detach().tolist())
        sgd = registry.create("optimizers", {{"name": "SGD", "learning_rate": 0.1}},
                              params=[torch.nn.Parameter(torch.zeros(1))])
        sched = registry.create("lr_schedulers", {{"name": "WarmupCosine", "warmup_steps": 2,
                                "total_steps": 6}}, optimizer=sgd)
        lrs = [sgd.param_groups[0]["lr"]]
        for _ in range(7):
            sgd.step(); sched.step(); lrs.append(sgd.param_groups[0]["lr"])
        print(json.dumps({{"type": type(lion).__name__, "betas": lion.defaults["betas"],
                          "trace": trace, "momentum": lion.state[p]["exp_avg"].tolist(),
                          "lrs": lrs, "needs_metric": registry.get("lr_schedulers",
                          "WarmupCosine").needs_metric, "scheduler": cfg.lr_scheduler}}))
    """,
    )
    assert out["type"] == "Lion" and out["betas"] == [0.9, 0.99]
    # step 1: p *= 1 - 0.1*0.5, then p -= 0.1 * sign(0.1 * g); step 2 the same (m has g's sign)
    assert out["trace"][0] == pytest.approx([0.85, -1.8, 2.85])
    assert out["trace"][1] == pytest.approx([0.7075, -1.61, 2.7075])
    # m = 0.99 * (0.01 g) + 0.01 g
    assert out["momentum"] == pytest.approx([0.009950, -0.004975, 0.0])
    # warm-up 0.05, 0.1; cosine over 4 steps: 0.1 * (1 + cos(pi t/4)) / 2; then 0
    assert out["lrs"] == pytest.approx([0.05, 0.1, 0.1, 0.0853553, 0.05, 0.0146447, 0, 0], abs=1e-6)
    assert out["needs_metric"] is False
    assert out["scheduler"] == {"name": "WarmupCosine", "warmup_steps": 2, "total_steps": 10}


def test_typos_in_plugin_parameters_are_caught_by_its_schema(penv: PluginEnv) -> None:
    path = penv.tmp / "typo.yml"
    path.write_text(CONFIG.format(lr_key="learning_rat", beta2=1.5, warmup=10))
    proc = _unet(penv, "config", "validate", str(path), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    assert re.search(r"optimizer\.learning_rat\b.*line 7", err), err
    assert "learning_rate" in err  # the suggestion
    assert re.search(r"lr_scheduler.*warmup_steps \(10\) must be smaller than total_steps", err)

    assert re.search(r"optimizer\.betas\[1\] \(line 8\).*less than 1", err), err


def test_plugin_hooks_receive_lifecycle_events(penv: PluginEnv) -> None:
    log = penv.tmp / "hooks.jsonl"
    out = _py(
        penv,
        """
        import json
        from unet_core.hooks import plugin_manager
        hook = plugin_manager().hook
        hook.unet_train_start(trainer=None, config=None)
        hook.unet_after_validation(trainer=None, iteration=200, score=0.75, loss=0.5)
        hook.unet_after_validation(trainer=None, iteration=400, score=0.8, loss=0.25)
        hook.unet_train_end(trainer=None, iteration=401, best_score=0.8)
        print(json.dumps([name for name, _ in plugin_manager().list_name_plugin()]))
    """,
        UNET_EXAMPLE_HOOK_LOG=str(log),
    )
    assert f"{DIST}:{DIST}" in out
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert events == [
        {"event": "after_validation", "iteration": 200, "score": 0.75, "loss": 0.5},
        {"event": "after_validation", "iteration": 400, "score": 0.8, "loss": 0.25},
        {"event": "train_end", "iteration": 401, "best_score": 0.8},
    ]


CLASH_PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "unet-plugin-clash"
version = "0.2.0"

[tool.setuptools]
packages = ["unet_plugin_clash"]

[project.entry-points."unet.optimizers"]
Lion = "unet_plugin_clash.good:Lion"

[project.entry-points."unet.losses"]
ExplodingLoss = "unet_plugin_clash.exploding:ExplodingLoss"

[project.entry-points."unet.metrics"]
GhostMetric = "unet_plugin_clash.ghost:GhostMetric"
NoSchema = "unet_plugin_clash.good:no_schema"

[project.entry-points."unet.models"]
Malformed = "unet_plugin_clash.good"

[project.entry-points."unet.hooks"]
clash = "unet_plugin_clash.exploding"
"""
CLASH_GOOD = """\
from unet_core.interfaces import ComponentConfig


class Lion:
    class Config(ComponentConfig):
        pass


def no_schema():
    pass
"""


@pytest.fixture(scope="module")
def clash_target(penv: PluginEnv) -> Path:
    """A second distribution, pip-installed into a --target folder, that is broken on purpose."""
    src = penv.tmp / "clash-src"
    (src / "unet_plugin_clash").mkdir(parents=True)
    (src / "pyproject.toml").write_text(CLASH_PYPROJECT)
    (src / "unet_plugin_clash" / "__init__.py").write_text("")
    (src / "unet_plugin_clash" / "good.py").write_text(CLASH_GOOD)
    (src / "unet_plugin_clash" / "exploding.py").write_text(
        "raise RuntimeError('unet-plugin-clash is broken on purpose')\n"
    )
    target = penv.tmp / "clash-target"
    _run([sys.executable, "-m", "pip", *_pip_build(src, "install", "-q", "--target", str(target))])
    assert (target / "unet_plugin_clash-0.2.0.dist-info" / "entry_points.txt").is_file()
    return target


def test_broken_and_conflicting_plugins_are_isolated(penv: PluginEnv, clash_target: Path) -> None:
    out = _py(
        penv,
        """
        import json, warnings, torch
        from unet_core import registry
        from unet_core.errors import PluginError
        from unet_core.hooks import plugin_manager
        res = {"status": {f"{r.kind}/{r.name}": [r.distribution, r.status, r.error]
                          for r in registry.records() if r.distribution != "unet-core"}}
        def attempt(kind, name):
            try:
                registry.get(kind, name)
                return None
            except PluginError as exc:
                return [str(exc), type(exc.__cause__).__name__]
        res["lion"] = attempt("optimizers", "Lion")
        res["exploding"] = attempt("losses", "ExplodingLoss")
        res["no_schema"] = attempt("metrics", "NoSchema")
        p = [torch.nn.Parameter(torch.zeros(1))]
        opt = registry.create("optimizers", {"name": "Adam"}, params=p)
        registry.create("lr_schedulers", {"name": "WarmupCosine", "total_steps": 3}, optimizer=opt)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plugin_manager().hook.unet_train_end(trainer=None, iteration=1, best_score=None)
        res["hook_warnings"] = [str(w.message) for w in caught]
        print(json.dumps(res))
    """,
        extra_path=[clash_target],
        UNET_EXAMPLE_HOOK_LOG=str(penv.tmp / "clash-hooks.jsonl"),
    )
    status = out["status"]
    both = "registered by two distributions"
    lion_error = status["optimizers/Lion"][2]
    assert both in lion_error and DIST in lion_error and "unet-plugin-clash" in lion_error
    assert status["optimizers/Lion"][1] == "broken"
    assert status["metrics/GhostMetric"][1:] == [
        "broken", "module 'unet_plugin_clash.ghost' not found"]  # fmt: skip
    assert "malformed entry point" in status["models/Malformed"][2]
    assert status["lr_schedulers/WarmupCosine"] == [DIST, "ok", None]
    assert status["losses/ExplodingLoss"][1] == "ok"  # found on disk; broken only once imported

    assert both in out["lion"][0] and "unet-plugin-clash" in out["lion"][0]
    message, cause = out["exploding"]
    assert "ExplodingLoss" in message and "unet-plugin-clash 0.2.0 is broken" in message
    assert "RuntimeError: unet-plugin-clash is broken on purpose" in message
    assert cause == "RuntimeError"
    assert "no Pydantic v2 'Config' model" in out["no_schema"][0]
    assert any("clash" in w and "broken on purpose" in w for w in out["hook_warnings"])
    # the example's own hook still ran
    assert json.loads((penv.tmp / "clash-hooks.jsonl").read_text())["event"] == "train_end"

    # the CLI lists every installed component; the broken ones with their one-line reason
    listing = _unet(penv, "plugins", "list", extra_path=[clash_target]).stdout
    lion = re.search(r"^Lion\s+optimizers\s+unet-plugin-\S+\s+\S+\s+broken: (.*)$", listing, re.M)
    assert lion and both in lion[1] and DIST in lion[1] and "unet-plugin-clash" in lion[1]
    assert re.search(r"^GhostMetric\s+metrics\s+unet-plugin-clash\s+0\.2\.0\s+broken: module "
                     r"'unet_plugin_clash.ghost' not found$", listing, re.M)  # fmt: skip
    assert re.search(r"^Adam\s+optimizers\s+unet-core\s+\S+\s+ok$", listing, re.M)
    assert re.search(rf"^WarmupCosine\s+lr_schedulers\s+{DIST}\s+0\.1\.0\s+ok$", listing, re.M)
    # --check imports the (matching) components, so an import failure shows too
    checked = _unet(penv, "plugins", "list", "--check", "Exploding*", extra_path=[clash_target])
    assert re.search(r"^ExplodingLoss\s+losses\s+unet-plugin-clash\s+0\.2\.0\s+broken: import "
                     r".*RuntimeError: unet-plugin-clash is broken on purpose$", checked.stdout,
                     re.M), checked.stdout  # fmt: skip


def test_uninstalling_the_plugin_removes_its_components(penv: PluginEnv) -> None:
    _run([penv.python, "-m", "pip", "uninstall", "-y", DIST])
    try:
        out = _py(
            penv,
            """
            import json
            from unet_core import registry
            from unet_core.errors import PluginError
            recs = [r.name for r in registry.records() if r.distribution == "unet-plugin-example"]
            try:
                registry.get("optimizers", "Lion")
            except PluginError as exc:
                print(json.dumps({"records": recs, "error": str(exc)}))
        """,
        )
        assert out["records"] == []
        assert out["error"].startswith("Unknown optimizer 'Lion'")
        listing = _unet(penv, "plugins", "list", "*i*").stdout
        assert "Lion" not in listing and "WarmupCosine" not in listing and DIST not in listing
        assert re.search(r"^CyclicLR\s+lr_schedulers\s+unet-core\s+\S+\s+ok$", listing, re.M)
    finally:
        _install(penv)  # leave the module's environment as the other tests expect it
