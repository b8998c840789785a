"""Registry and discovery: lookup, suggestions, register(), broken-plugin isolation."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
from pydantic import Field

from unet_core import discovery, registry
from unet_core.discovery import Record
from unet_core.errors import ConfigError, PluginError
from unet_core.interfaces import ComponentConfig
from unet_core.registry import PluginWarning, Registry


class Scale:
    """A tiny component: multiplies by ``factor``."""

    class Config(ComponentConfig):
        factor: float = Field(2.0, gt=0, description="Multiplier.")
        offset: float = Field(0.0, description="Added after scaling.")

    def __init__(self, factor: float, offset: float, bias: float = 0.0) -> None:
        self.factor, self.offset, self.bias = factor, offset, bias

    def __call__(self, x: float) -> float:
        return x * self.factor + self.offset + self.bias


@pytest.fixture
def reg() -> Registry:
    r = Registry()
    r.register("transforms", "Scale", Scale)
    return r


def test_builtin_entry_points_are_listed_without_import():
    names = registry.list("models")
    assert {"UNet3D", "ResidualUNet3D", "ResidualUNetSE3D", "UNet2D", "ResidualUNet2D"} <= set(
        names
    )
    assert registry.list("optimizers", "adam*") == ["Adam", "Adamax", "AdamW"]
    rec = registry.default_registry.record("optimizers", "SGD")
    assert rec.distribution == "unet-core" and rec.target == "unet_plugins.optim.optimizers:SGD"


def test_create_validates_and_passes_context(reg):
    obj = reg.create("transforms", {"name": "Scale", "factor": 3}, bias=1.0)
    assert obj(2.0) == 7.0
    with pytest.raises(ConfigError, match="factor"):
        reg.create("transforms", {"name": "Scale", "factor": -1})
    with pytest.raises(ConfigError, match="facter"):
        reg.create("transforms", {"name": "Scale", "facter": 1})


def test_unknown_name_suggests_closest(reg):
    with pytest.raises(PluginError, match=r"did you mean `Scale`"):
        reg.get("transforms", "Scael")
    with pytest.raises(PluginError, match="Unknown component kind 'model'.*`models`"):
        reg.list("model")


def test_register_twice_is_an_error_naming_the_owner(reg):
    with pytest.raises(PluginError, match="already registered by <runtime>"):
        reg.register("transforms", "Scale", Scale)
    reg.register("transforms", "Scale", Scale, replace=True)


def test_register_rejects_component_without_pydantic_config(reg):
    class NoConfig:
        pass

    with pytest.raises(PluginError, match="no Pydantic v2 'Config'"):
        reg.register("losses", "NoConfig", NoConfig)


def test_broken_import_is_isolated_and_reported(reg, tmp_path, monkeypatch):
    (tmp_path / "exploding_plugin.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    records = reg._all()["losses"]
    records["Exploding"] = Record("losses", "Exploding", "exploding_plugin:Loss", "evil-pkg", "1.0")
    with pytest.raises(
        PluginError,
        match="broken: import of exploding_plugin:Loss failed: RuntimeError: boom at import",
    ) as info:
        reg.get("losses", "Exploding")
    assert isinstance(info.value.__cause__, RuntimeError)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = reg.load_all("losses")
    assert any(r.name == "Exploding" and r.status == "broken" for r in loaded)
    assert any(
        issubclass(w.category, PluginWarning) and "Exploding" in str(w.message) for w in caught
    )
    # The others still work.
    assert reg.get("transforms", "Scale") is Scale


def test_malformed_entry_point_and_missing_module():
    assert discovery._split_target("no_colon_here") is None
    assert discovery._split_target("pkg.mod:Obj") == ("pkg.mod", "Obj")
    assert discovery.module_exists("unet_core.registry")
    assert not discovery.module_exists("unet_core.does_not_exist")
    assert not discovery.module_exists("surely_not_a_module_xyz")


def test_bad_config_class_is_broken(reg, tmp_path, monkeypatch):
    (tmp_path / "badcfg_plugin.py").write_text("class Thing:\n    Config = dict\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg._all()["metrics"]["Thing"] = Record("metrics", "Thing", "badcfg_plugin:Thing", "x", "1")
    with pytest.raises(PluginError, match="no Pydantic v2 'Config' model"):
        reg.get("metrics", "Thing")


def test_deferred_component_validates_without_importing_its_implementation(
    reg, tmp_path, monkeypatch
):
    from unet_core.interfaces import Deferred

    (tmp_path / "heavy_impl.py").write_text(
        "import sys\nsys.modules['heavy_impl_was_imported'] = sys\n"
        "from test_registry import Scale as Impl\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    deferred = Deferred("heavy_impl:Impl", Scale.Config, check_config=lambda cfg, model: ["x"])
    reg.register("transforms", "Heavy", deferred)
    name, cfg = reg.validate("transforms", {"name": "Heavy", "factor": 4})
    assert cfg.factor == 4 and "heavy_impl_was_imported" not in sys.modules
    assert reg.light_attr("transforms", "Heavy", "check_config")(cfg, {}) == ["x"]
    assert "heavy_impl_was_imported" not in sys.modules
    obj = reg.create("transforms", {"name": "Heavy", "factor": 4})
    assert obj(1.0) == 4.0 and "heavy_impl_was_imported" in sys.modules


def test_deferred_with_broken_implementation_is_reported(reg, tmp_path, monkeypatch):
    from unet_core.interfaces import Deferred

    (tmp_path / "broken_impl.py").write_text("raise ImportError('no torch here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg.register("transforms", "Broken", Deferred("broken_impl:Thing", Scale.Config))
    assert reg.validate("transforms", {"name": "Broken"})[0] == "Broken"
    with pytest.raises(
        PluginError, match="broken: import of broken_impl:Thing failed: ImportError"
    ):
        reg.create("transforms", {"name": "Broken"})
