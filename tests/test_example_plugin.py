"""The example third-party plugin, really pip-installed into a fresh virtual environment.

The environment is created without pip and sees the host environment (unet-core, torch) through
a ``.pth`` file, so nothing is downloaded. The example is built into a wheel once, installed with
pip, used through the ``unet`` CLI and the registry in subprocesses (its model, loss and metric
with hand-computed values; a 2-iteration ``unet train`` run with its model, loss, metric,
optimizer and scheduler), and uninstalled with pip.
A second, deliberately broken distribution is pip-installed into a ``--target`` folder to show
that a broken plugin and a name claimed twice are reported while everything else keeps working.
The package's own tests, which check its components with ``unet_core.testing``, run against the
installed wheel. The last tests check that docs/plugins.md quotes the example's code as it is.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import pytest
from plugin_env import PluginEnv, _pip_build, _run, plugin_env

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "unet-plugin-example"
DIST = "unet-plugin-example"
VERSION = "0.2.0"


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
    penv = plugin_env(tmp_path_factory.mktemp("plugin-env"), EXAMPLE, "unet_plugin_example")
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
        [kind, name, DIST, VERSION, "ok"]
        for kind, name in sorted(
            [
                ("losses", "SoftClDiceLoss"),
                ("lr_schedulers", "WarmupCosine"),
                ("metrics", "SurfaceDice"),
                ("models", "AttentionGateUNet3D"),
                ("optimizers", "Lion"),
            ]
        )
    ]
    assert out["torch_imported"] is False

    listing = _unet(penv, "plugins", "list", "--long").stdout
    for name, kind in [
        ("AttentionGateUNet3D", "models"),
        ("SoftClDiceLoss", "losses"),
        ("SurfaceDice", "metrics"),
        ("Lion", "optimizers"),
        ("WarmupCosine", "lr_schedulers"),
    ]:
        assert re.search(rf"^{name}\s+{kind}\s+{DIST}\s+{VERSION}\s+ok$", listing, re.M), listing
    assert re.search(r"^Adam\s+optimizers\s+unet-core\s+", listing, re.M)
    assert re.search(r"^UNet3D\s+models\s+unet-core\s+", listing, re.M)

    shown = _unet(penv, "plugins", "show", "Lion").stdout
    assert f"from {DIST} {VERSION}" in shown
    for field in ("learning_rate", "betas", "weight_decay", "0.0001"):
        assert field in shown, field


CONFIG = """\
model:
  name: AttentionGateUNet3D
  in_channels: 1
  out_channels: 1
  {f_maps_key}: 8
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
    path.write_text(
        CONFIG.format(f_maps_key="f_maps", lr_key="learning_rate", beta2=0.99, warmup=2)
    )

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
                          "WarmupCosine").needs_metric, "scheduler": cfg.lr_scheduler.dump()}}))
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
    path.write_text(CONFIG.format(f_maps_key="f_map", lr_key="learning_rat", beta2=1.5, warmup=10))
    proc = _unet(penv, "config", "validate", str(path), check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    # each component's own schema, with the YAML line and the closest valid key
    assert re.search(r"model\.f_map \(line 5\): unknown key `f_map` for model "
                     r"AttentionGateUNet3D \(did you mean `f_maps`\?\)", err), err  # fmt: skip
    assert re.search(r"optimizer\.learning_rat\b.*line 8", err), err
    assert "learning_rate" in err  # the suggestion
    assert re.search(r"lr_scheduler.*warmup_steps \(10\) must be smaller than total_steps", err)

    assert re.search(r"optimizer\.betas\[1\] \(line 9\).*less than 1", err), err


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


# -- the plugin's model, loss and metric -------------------------------------------------------
# Every component in this config comes from the example package, except the data pipeline.
TRAIN_CONFIG = """\
manual_seed: 0
device: cpu
model:
  name: AttentionGateUNet3D
  in_channels: 1
  out_channels: 1
  f_maps: {f_maps}
  num_levels: 2
  num_groups: {num_groups}
loss:
  name: SoftClDiceLoss
  alpha: 0.5
  iterations: 2
  normalization: {normalization}
eval_metric:
  name: SurfaceDice
  tolerance: 1.0
  spacing: [2.0, 1.0, 1.0]
optimizer:
  name: Lion
  learning_rate: 0.0003
  weight_decay: 0.01
lr_scheduler:
  name: WarmupCosine
  warmup_steps: 1
  total_steps: 4
trainer:
  checkpoint_dir: {run_dir}
  max_num_epochs: 10
  max_num_iterations: 2
  validate_after_iters: 1
  log_after_iters: 100
  progress: none
loaders:
  batch_size: 1
  num_workers: 0
  raw_internal_path: raw
  label_internal_path: label
  train:
    file_paths: [{train}]
    slice_builder: {{name: SliceBuilder, patch_shape: [8, 16, 16], stride_shape: [4, 8, 8],
                    skip_shape_check: true}}
    transformer:
      raw: [{{name: Standardize}}, {{name: ToTensor, expand_dims: true}}]
      label: [{{name: BlobsToMask}}, {{name: ToTensor, expand_dims: true}}]
  val:
    file_paths: [{val}]
    slice_builder: {{name: SliceBuilder, patch_shape: [8, 16, 16], stride_shape: [8, 16, 16],
                    skip_shape_check: true}}
    transformer:
      raw: [{{name: Standardize}}, {{name: ToTensor, expand_dims: true}}]
      label: [{{name: BlobsToMask}}, {{name: ToTensor, expand_dims: true}}]
"""


def _vessels(path: Path, seed: int) -> Path:
    """A tiny volume of straight 'vessels' (3x3-voxel tubes along x) in noise."""
    import h5py
    import numpy as np

    rng = np.random.default_rng(seed)
    label = np.zeros((8, 16, 16), np.uint16)
    for i, (z, y) in enumerate([(2, 3), (5, 8), (3, 12)], start=1):
        label[z - 1 : z + 2, y - 1 : y + 2, :] = i
    raw = (label > 0) + rng.normal(0.0, 0.3, label.shape)
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=raw.astype(np.float32))
        f.create_dataset("label", data=label)
    return path


def _train_config(penv: PluginEnv, name: str, **changes: object) -> Path:
    values: dict[str, object] = {
        "f_maps": 4,
        "num_groups": 2,
        "normalization": "sigmoid",
        "run_dir": penv.tmp / f"run-{name}",
        "train": penv.tmp / "vessels_train.h5",
        "val": penv.tmp / "vessels_val.h5",
    }
    values.update(changes)
    path = penv.tmp / f"{name}.yml"
    path.write_text(TRAIN_CONFIG.format(**values))
    return path


def test_plugin_model_loss_and_metric_validate_build_and_compute(penv: PluginEnv) -> None:
    good = _train_config(penv, "components")
    groups = _train_config(penv, "groups", f_maps=6, num_groups=4)
    softmax = _train_config(penv, "softmax", normalization="softmax")
    out = _py(
        penv,
        f"""
        import json, torch
        from unet_core import registry
        from unet_core.config import load_config
        from unet_core.errors import ConfigError, DataError
        res = {{}}
        cfg = load_config({str(good)!r})
        res["names"] = [cfg.model.name, cfg.loss.name, cfg.eval_metric.name]
        res["problems"] = []
        for path in ({str(groups)!r}, {str(softmax)!r}):
            try:
                load_config(path)
            except ConfigError as exc:
                res["problems"].append(str(exc))

        # the model contract: attributes, train-mode logits, eval-mode activation, any size
        torch.manual_seed(0)
        model = registry.create("models", cfg.model)
        x = torch.randn(2, 1, 5, 11, 9)  # no axis a multiple of 2
        train_out = model.train()(x)
        model.eval()
        with torch.no_grad():
            logits, eval_out = model.logits(x), model(x)
        multi = registry.create("models", {{"name": "AttentionGateUNet3D", "in_channels": 2,
                                "out_channels": 3, "f_maps": 4, "num_groups": 2,
                                "final_sigmoid": False}}).eval()
        regression = registry.create("models", {{"name": "AttentionGateUNet3D", "in_channels": 1,
                                     "out_channels": 1, "is_segmentation": False}}).eval()
        plain = registry.create("models", {{**cfg.model, "attention": False}})
        with torch.no_grad():
            softmax_sum = multi(torch.randn(1, 2, 4, 6, 7)).sum(dim=1)
            y = torch.randn(1, 1, 3, 4, 4)
            identity = bool(torch.equal(regression(y), regression.logits(y)))
        try:
            model(torch.randn(1, 2, 8, 8, 8))
        except DataError as exc:
            res["bad_input"] = str(exc)
        res["model"] = {{
            "attrs": [model.in_channels, model.out_channels, model.spatial_dims,
                      model.is_segmentation, model.final_sigmoid],
            "shape": list(train_out.shape),
            "train_is_logits": torch.allclose(train_out, logits, atol=1e-6),
            "eval_is_sigmoid": torch.allclose(eval_out, torch.sigmoid(logits)),
            "softmax_sums_to_one": torch.allclose(softmax_sum, torch.ones(()), atol=1e-5),
            "regression_is_identity": identity,
            "gate_parameters": sum(p.numel() for p in model.parameters())
                               - sum(p.numel() for p in plain.parameters()),
        }}

        # the loss on 5x5 masks (z = 1); logits of +-30 give probabilities 0 and 1
        def image(rows, cols=slice(None)):
            t = torch.zeros(1, 1, 1, 5, 5)
            t[..., rows, cols] = 1
            return t
        bar, line = image(slice(1, 4)), image(2)
        gap = line.clone()
        gap[..., 2, 2] = 0
        logit = lambda mask: (2 * mask - 1) * 30
        loss = lambda **p: registry.create("losses", {{"name": "SoftClDiceLoss", **p}})
        res["loss"] = {{
            "centreline_vs_bar": [float(loss(alpha=a)(logit(line), bar)) for a in (0, 0.5, 1)],
            "gap_cldice": float(loss(alpha=1)(logit(gap), line)),
            "gap_dice": float(loss(alpha=0)(logit(gap), line)),
            "needs_weight": registry.get("losses", "SoftClDiceLoss").needs_weight,
            "layout": registry.get("losses", "SoftClDiceLoss").target_layout,
        }}
        for name, target in [("no_channel", bar[:, 0]), ("ids", bar * 7)]:
            try:
                loss()(logit(bar), target)
            except DataError as exc:
                res["loss"][name] = str(exc)

        # the metric: 3x3 squares one voxel apart in x, in a 5x6 image (z = 1)
        pred = torch.zeros(2, 1, 1, 5, 6)
        pred[0, ..., 1:4, 1:4] = 0.9
        true = torch.zeros(2, 1, 1, 5, 6)
        true[..., 1:4, 2:5] = 1
        metric = lambda **p: registry.create("metrics", {{"name": "SurfaceDice", **p}})
        res["metric"] = {{
            "tol0": metric(tolerance=0)(pred[:1], true[:1]),
            "tol1": metric(tolerance=1)(pred[:1], true[:1]),
            "tol1_wide_x": metric(tolerance=1, spacing=[1, 1, 2])(pred[:1], true[:1]),
            "batch": metric(tolerance=0)(pred, true),
            "both_empty": metric()(torch.zeros(1, 1, 3, 3, 3), torch.zeros(1, 3, 3, 3)),
            "higher_is_better": registry.get("metrics", "SurfaceDice").higher_is_better,
        }}
        try:
            metric(spacing=[1.0, 1.0])(pred, true)
        except DataError as exc:
            res["metric"]["bad_spacing"] = str(exc)
        print(json.dumps(res))
    """,
    )
    assert out["names"] == ["AttentionGateUNet3D", "SoftClDiceLoss", "SurfaceDice"]
    groups_err, softmax_err = out["problems"]
    assert re.search(r"model \(line 3\).*f_maps \(6\) must be a multiple of num_groups \(4\)",
                     groups_err), groups_err  # fmt: skip
    assert "set num_groups to 3 or f_maps to 8" in groups_err
    assert "loss SoftClDiceLoss uses normalization: softmax" in softmax_err
    assert "final_sigmoid: True" in softmax_err

    m = out["model"]
    assert m["attrs"] == [1, 1, 3, True, True]
    assert m["shape"] == [2, 1, 5, 11, 9]
    assert m["train_is_logits"] and m["eval_is_sigmoid"] and m["softmax_sums_to_one"]
    assert m["regression_is_identity"]
    # 2 levels: one gate, skip 4 channels -> 2 (2x2x2 conv, no bias: 4*2*8 = 64), gating signal
    # 8 -> 2 (1x1 conv: 8*2 + 2 = 18), score 2 -> 1 (2 + 1 = 3)
    assert m["gate_parameters"] == 64 + 18 + 3
    assert "in_channels = 1, got shape (1, 2, 8, 8, 8)" in out["bad_input"]

    loss = out["loss"]
    # centre line (5 voxels) vs a 3-voxel-thick bar (15): soft Dice (2*5+1)/(5+15+1) = 11/21;
    # the bar's soft skeleton is that centre line, so clDice = 1 (smooth = 1 everywhere)
    assert loss["centreline_vs_bar"] == pytest.approx([10 / 21, 5 / 21, 0.0], abs=1e-6)
    # a gap in the line: precision (4+1)/(4+1) = 1, sensitivity (4+1)/(5+1) -> clDice 10/11;
    # Dice (2*4+1)/(4+5+1) = 0.9
    assert loss["gap_cldice"] == pytest.approx(1 / 11, abs=1e-6)
    assert loss["gap_dice"] == pytest.approx(0.1, abs=1e-6)
    assert loss["needs_weight"] is False and loss["layout"] == "masks"
    assert "no channel axis" in loss["no_channel"] and "BlobsToMask" in loss["no_channel"]
    assert "ranges from 0 to 7" in loss["ids"]

    metric = out["metric"]
    # surfaces: the 8-voxel rings; 4 ring voxels coincide, every other is 1 voxel from the
    # other ring; with x twice as long, only (2,3) and (2,2) are within 1 of the other ring
    assert metric["tol0"] == pytest.approx(8 / 16)
    assert metric["tol1"] == pytest.approx(1.0)
    assert metric["tol1_wide_x"] == pytest.approx(10 / 16)
    assert metric["batch"] == pytest.approx((0.5 + 0.0) / 2)  # sample 2 predicts nothing
    assert metric["both_empty"] == 1.0 and metric["higher_is_better"] is True
    assert "spacing [1.0, 1.0] (2 axes)" in metric["bad_spacing"]


def test_training_with_the_plugin_model_loss_and_metric(penv: PluginEnv) -> None:
    _vessels(penv.tmp / "vessels_train.h5", seed=0)
    _vessels(penv.tmp / "vessels_val.h5", seed=1)
    config = _train_config(penv, "train")
    log = penv.tmp / "train-hooks.jsonl"
    proc = _run(
        [penv.python, "-m", "unet_core.cli.main", "train", "--config", config],
        UNET_EXAMPLE_HOOK_LOG=str(log),
    )
    assert "Finished after 2 iterations" in proc.stdout, proc.stdout + proc.stderr
    run_dir = penv.tmp / "run-train"
    assert (run_dir / "last_checkpoint.pytorch").is_file()
    assert (run_dir / "best_checkpoint.pytorch").is_file()

    events = [json.loads(line) for line in log.read_text().splitlines()]
    validations = [e for e in events if e["event"] == "after_validation"]
    assert [e["iteration"] for e in validations] == [1, 2]
    assert all(0.0 <= e["score"] <= 1.0 and e["loss"] > 0 for e in validations)  # SurfaceDice
    saved = {e["file"] for e in events if e["event"] == "checkpoint_saved"}
    assert saved == {"last_checkpoint.pytorch", "best_checkpoint.pytorch"}
    assert events[-1]["event"] == "train_end" and events[-1]["iteration"] == 2


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


def test_the_example_checks_its_contracts_with_the_kit(penv: PluginEnv) -> None:
    """The package's own tests (``unet_core.testing``) pass against the installed wheel."""
    tests = penv.tmp / "src" / "tests"
    proc = _run([penv.python, "-m", "pytest", "-q", "-p", "no:cacheprovider", tests], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^10 passed", proc.stdout, re.M), proc.stdout
    where = _py(penv, "import json, unet_plugin_example as m; print(json.dumps(m.__file__))")
    assert str(penv.tmp / "src") not in where  # the wheel was tested, not the copied source


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
    listing = _unet(penv, "plugins", "list", "--long", extra_path=[clash_target]).stdout
    lion = re.search(r"^Lion\s+optimizers\s+unet-plugin-\S+\s+\S+\s+broken: (.*)$", listing, re.M)
    assert lion and both in lion[1] and DIST in lion[1] and "unet-plugin-clash" in lion[1]
    assert re.search(r"^GhostMetric\s+metrics\s+unet-plugin-clash\s+0\.2\.0\s+broken: module "
                     r"'unet_plugin_clash.ghost' not found$", listing, re.M)  # fmt: skip
    assert re.search(r"^Adam\s+optimizers\s+unet-core\s+\S+\s+ok$", listing, re.M)
    assert re.search(rf"^WarmupCosine\s+lr_schedulers\s+{DIST}\s+{VERSION}\s+ok$", listing, re.M)
    # --check imports the (matching) components, so an import failure shows too
    checked = _unet(penv, "plugins", "list", "-l", "--check", "Exploding*",
                    extra_path=[clash_target], check=False)  # fmt: skip
    assert checked.returncode == 1  # a broken component fails the check (for CI)
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
            errors = []
            for kind, name in [("optimizers", "Lion"), ("models", "AttentionGateUNet3D")]:
                try:
                    registry.get(kind, name)
                except PluginError as exc:
                    errors.append(str(exc))
            print(json.dumps({"records": recs, "errors": errors}))
        """,
        )
        assert out["records"] == []
        assert out["errors"][0].startswith("Unknown optimizer 'Lion'")
        assert out["errors"][1].startswith("Unknown model 'AttentionGateUNet3D'")
        listing = _unet(penv, "plugins", "list", "--long", "*i*").stdout
        assert DIST not in listing
        for name in (
            "Lion",
            "WarmupCosine",
            "AttentionGateUNet3D",
            "SoftClDiceLoss",
            "SurfaceDice",
        ):
            assert name not in listing
        assert re.search(r"^CyclicLR\s+lr_schedulers\s+unet-core\s+\S+\s+ok$", listing, re.M)
    finally:
        _install(penv)  # leave the module's environment as the other tests expect it


# -- docs/plugins.md stays true to the example (no environment needed) --------------------------
GUIDE = ROOT / "docs" / "plugins.md"


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, re.M | re.S)


def test_guide_excerpts_match_the_example_code() -> None:
    excerpts = [
        block
        for block in _code_blocks(GUIDE.read_text(), "python")
        if block.startswith(("# unet_plugin_example/", "# tests/"))
    ]
    assert len(excerpts) >= 5
    for block in excerpts:
        header, *lines = block.splitlines()
        source = (EXAMPLE / header[2:]).read_text().splitlines()
        for line in lines:
            if line.strip() not in ("", "..."):
                assert line in source, f"{header[2:]} no longer has: {line!r}"


def test_guide_entry_points_and_hooks_match_the_package() -> None:
    from unet_core.hooks import HookSpecs

    text = GUIDE.read_text()
    (toml,) = _code_blocks(text, "toml")
    assert toml in (EXAMPLE / "pyproject.toml").read_text()
    documented = set(re.findall(r"^\| `(unet_\w+)` \|", text, re.M))
    assert documented == {name for name in vars(HookSpecs) if name.startswith("unet_")}
