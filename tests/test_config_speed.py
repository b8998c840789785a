"""`unet config validate` stays fast: schemas and config-time checks import neither torch nor scipy.

Built-in components are registered as ``Deferred`` entries (``unet_plugins/<area>/specs.py``)
whose ``Config`` lives in a light module; the implementation is imported on first use. These
tests pin that contract (by the modules a validation imports, not by timing) and that
``registry.get`` still returns the real implementation with the very same ``Config``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from unet_core import discovery, registry
from unet_core.interfaces import Deferred
from unet_core.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = ROOT / "tests" / "configs" / "train_minimal.yml"
HEAVY = ("torch", "scipy", "skimage", "h5py")

#: Kinds whose built-ins are all Deferred (optimizers, lr_schedulers and slice builders import
#: no heavy module at all, so they are registered directly).
DEFERRED_KINDS = ("models", "losses", "metrics", "datasets", "transforms")

PROBE = """
import sys
from unet_core.cli.main import main
code = 0
try:
    main(["config", "validate", {path!r}])
except SystemExit as exc:
    code = exc.code
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {heavy!r})
print(f"EXIT={{code}} HEAVY=[{{','.join(heavy)}}]")
"""


def validate_in_subprocess(path: Path) -> tuple[int, list[str], str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(path=str(path), heavy=set(HEAVY))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    found = re.search(r"^EXIT=(\d+) HEAVY=\[(.*)\]$", out.stdout, re.M)
    assert found, out.stdout[-2000:] + out.stderr[-2000:]
    heavy = [m for m in found.group(2).split(",") if m]
    return int(found.group(1)), heavy, out.stdout + out.stderr


def test_validate_imports_neither_torch_nor_scipy():
    code, heavy, output = validate_in_subprocess(MINIMAL)
    assert code == 0, output
    assert "valid (model, loss, eval_metric" in output
    assert heavy == [], f"validation imported {heavy}"


def test_typo_fails_with_suggestion_without_heavy_imports(tmp_path):
    bad = tmp_path / "typo.yml"
    bad.write_text(MINIMAL.read_text().replace("alpha: 1.0", "alpah: 1.0"))
    code, heavy, output = validate_in_subprocess(bad)
    assert code == 2, output
    assert "loss.alpah (line 12)" in output and "did you mean `alpha`" in output
    assert heavy == [], f"validation imported {heavy}"


def test_cross_checks_run_without_heavy_imports(tmp_path):
    """The loss-vs-model and patch-vs-model checks use the light attributes of the specs."""
    text = MINIMAL.read_text().replace("final_sigmoid: true", "final_sigmoid: false")
    bad = tmp_path / "cross.yml"
    bad.write_text(text.replace("patch_shape: [32, 64, 64]", "patch_shape: [2, 64, 64]", 1))
    code, heavy, output = validate_in_subprocess(bad)
    assert code == 2, output
    assert "loss BCEDiceLoss trains the logits for a sigmoid output" in output
    assert "loaders.train.slice_builder.patch_shape (line 40)" in output
    assert "too small for UNet3D" in output
    assert heavy == [], f"validation imported {heavy}"


def builtin_records(kind: str) -> list[discovery.Record]:
    return [r for r in registry.records(kind) if r.target.startswith("unet_plugins.")]


@pytest.mark.parametrize("kind", list(KINDS))
def test_get_returns_the_implementation_with_the_specs_config(kind):
    records = builtin_records(kind)
    for rec in records:
        declared = discovery.load(rec)
        assert declared is not None, rec.error
        real = registry.get(kind, rec.name)
        if kind in DEFERRED_KINDS:
            assert isinstance(declared, Deferred), rec.target
            assert rec.target.startswith(f"unet_plugins.{kind}.specs:")
        if not isinstance(declared, Deferred):
            assert real is declared
            continue
        assert not isinstance(real, Deferred)
        assert real.__name__ == rec.name == declared.__name__
        assert real.Config is declared.Config, rec.name
        assert registry.config_model(kind, rec.name) is real.Config
        for attr, value in declared._attrs.items():
            if not callable(value):  # plain facts must match the implementation's
                assert value == getattr(real, attr, getattr(real.Config, attr, None)), attr


MODEL_SPECS = [
    {"out_channels": out, "final_sigmoid": sig, "is_segmentation": seg}
    for out in (1, 2, 3)
    for sig in (True, False)
    for seg in (True, False)
]
LOSS_PARAMS = {
    "DiceLoss": [{}, {"normalization": "softmax"}, {"normalization": "none"}, {"weight": [1, 2]}],
    "BCEDiceLoss": [{}, {"pos_weight": [1.0, 2.0, 3.0]}],
    "CrossEntropyLoss": [{}, {"weight": [1.0, 2.0]}],
    "TverskyLoss": [{"normalization": "softmax"}],
    "WeightedSmoothL1Loss": [{"threshold": 0.5, "initial_weight": 2.0}],
}


@pytest.mark.parametrize("name", registry.list("losses"))
def test_light_loss_check_equals_the_class_check(name):
    if not isinstance(discovery.load(registry.default_registry.record("losses", name)), Deferred):
        pytest.skip("not a deferred built-in")
    light = registry.light_attr("losses", name, "check_config")
    cls = registry.get("losses", name)
    for params in LOSS_PARAMS.get(name, [{}]):
        config = cls.Config.model_validate(params)
        for model in MODEL_SPECS:
            assert light(config, model) == cls.check_config(config, model), (params, model)
            spec = {"name": name, **params}
            assert light(spec, model) == cls.check_config(spec, model)


@pytest.mark.parametrize("name", ["UNet3D", "ResidualUNet3D", "UNet2D", "ResidualUNet2D"])
def test_light_patch_check_equals_the_class_check(name):
    light = registry.light_attr("models", name, "check_patch_shape")
    cls = registry.get("models", name)
    config = cls.Config.model_validate({"in_channels": 1, "out_channels": 1, "f_maps": 8})
    for patch in ([32, 64, 64], [1, 64, 64], [4, 64, 64], [64, 64], [2, 8, 8], [1, 2, 2]):
        assert light(config, patch) == cls.check_patch_shape(config, patch), patch
    assert light(config, [1, 64, 64] if cls.Config.spatial_dims == 2 else [32, 64, 64]) is None


def test_plugins_show_reads_a_deferreds_config(tmp_path, monkeypatch, capsys):
    """The Config of a Deferred entry is the registered one; the implementation need not
    repeat it (docs/plugins.md's light route), and `plugins show` must not need it either."""
    from cli_support import run_here

    (tmp_path / "plain_impl.py").write_text(
        'class Thing:\n    """A transform.\n\n    Indented second paragraph."""\n\n'
        "    def __call__(self, x, rng):\n        return x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    config = registry.config_model("transforms", "RandomFlip")
    registry.register("transforms", "PlainDeferred", Deferred("plain_impl:Thing", config))
    try:
        code, out, err = run_here(capsys, "plugins", "show", "PlainDeferred")
        assert code == 0 and "Traceback" not in err, err
        assert "axis_prob" in out  # RandomFlip's parameters, from the registered Config
        assert "\nIndented second paragraph." in out  # docstrings are dedented
    finally:
        registry.default_registry.unregister("transforms", "PlainDeferred")


def test_plugins_list_check_resolves_deferred_implementations(tmp_path, monkeypatch):
    """`plugins list --check` reports an implementation module that fails to import."""
    from click.testing import CliRunner

    from unet_core.cli.plugins import plugins

    (tmp_path / "broken_speed_impl.py").write_text("raise ImportError('no torch here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = registry.config_model("transforms", "Identity")
    registry.register("transforms", "BrokenDeferred", Deferred("broken_speed_impl:Thing", config))
    try:
        plain = CliRunner().invoke(plugins, ["list", "BrokenDeferred"])
        assert plain.exit_code == 0 and "0 broken" in plain.output  # list alone imports nothing
        checked = CliRunner().invoke(plugins, ["list", "--check", "BrokenDeferred"])
        assert checked.exit_code == 1, checked.output  # a broken component fails the check
        assert "broken: import of broken_speed_impl:Thing failed: ImportError" in checked.output
        assert "1 components, 1 broken." in checked.output
        ok = CliRunner().invoke(plugins, ["list", "--check", "-k", "losses", "DiceLoss"])
        assert "DiceLoss" in ok.output and "0 broken" in ok.output and ok.exit_code == 0
    finally:
        registry.default_registry.unregister("transforms", "BrokenDeferred")


def test_plugins_list_check_flags_a_misspelt_entry_point_group(tmp_path, monkeypatch):
    """A distribution registering under `unet.loss` (not `unet.losses`) is named, with the
    group it meant, and the check fails; nothing else changes."""
    from click.testing import CliRunner

    from unet_core.cli.plugins import plugins

    info = tmp_path / "typo_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: typo-plugins\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[unet.loss]\nMyLoss = typo_plugins:MyLoss\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    checked = CliRunner().invoke(plugins, ["list", "--check", "-k", "losses", "DiceLoss"])
    assert checked.exit_code == 1, checked.output
    assert "typo-plugins declares entry points in the group 'unet.loss'" in checked.output
    assert "did you mean unet.losses?" in checked.output
    assert "DiceLoss" in checked.output and "0 broken" in checked.output
