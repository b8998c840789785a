"""One typed path from YAML to tensor: each section validated once, components get Config objects.

The counting components below are real components registered with ``registry.register``: a
UNet3D and a grid slice builder whose ``Config`` counts every validation (constructor,
``model_validate``, anything pydantic runs), and whose builder records what it receives.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import h5py
import numpy as np
import pytest
import torch
import yaml
from pydantic import model_validator

from unet_core import registry
from unet_core.config import ComponentRef, ExperimentConfig, load_config
from unet_core.errors import ConfigError
from unet_core.interfaces import ComponentConfig
from unet_plugins.models.config import UNetConfig
from unet_plugins.models.unet3d import UNet3D
from unet_plugins.slice_builders.grid import SliceBuilder

VALIDATIONS: Counter[str] = Counter()


class CountingUNetConfig(UNetConfig):
    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any) -> Any:
        VALIDATIONS["model"] += 1
        return data


class CountingUNet(UNet3D):
    Config = CountingUNetConfig
    received: ClassVar[list[Any]] = []

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> CountingUNet:
        cls.received.append(config)
        return cls(config)


class CountingGridConfig(SliceBuilder.Config):
    @model_validator(mode="before")
    @classmethod
    def _count(cls, data: Any) -> Any:
        VALIDATIONS["slice_builder"] += 1
        return data


class CountingGrid(SliceBuilder):
    Config = CountingGridConfig
    received: ClassVar[list[Any]] = []

    @classmethod
    def from_config(cls, config: CountingGridConfig, **arrays: Any) -> CountingGrid:
        cls.received.append(config)
        return cls(**arrays, **dict(config))


@pytest.fixture()
def counting_components():
    VALIDATIONS.clear()
    CountingUNet.received.clear()
    CountingGrid.received.clear()
    registry.register("models", "CountingUNet", CountingUNet)
    registry.register("slice_builders", "CountingGrid", CountingGrid)
    yield
    registry.default_registry.unregister("models", "CountingUNet")
    registry.default_registry.unregister("slice_builders", "CountingGrid")


def _volume(path: Path) -> str:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["raw"] = rng.random((8, 32, 32), dtype=np.float32)
        f["label"] = (rng.random((8, 32, 32)) > 0.5).astype(np.uint8)
    return str(path)


def _experiment(tmp_path: Path, model: str = "CountingUNet", builder: str = "CountingGrid") -> Path:
    phase = {
        "slice_builder": {
            "name": builder,
            "patch_shape": [4, 16, 16],
            "stride_shape": [4, 16, 16],
            "skip_shape_check": True,
        },
        "transformer": {
            "raw": [{"name": "Standardize"}, {"name": "ToTensor", "expand_dims": True}],
            "label": [{"name": "ToTensor", "expand_dims": True}],
        },
    }
    config = {
        "model": {
            "name": model,
            "in_channels": 1,
            "out_channels": 1,
            "f_maps": 6,
            "num_levels": 2,
            "layer_order": "cr",
        },
        "loss": {"name": "BCEWithLogitsLoss"},
        "eval_metric": {"name": "DiceCoefficient"},
        "optimizer": {"learning_rate": 1e-3},
        "lr_scheduler": {"name": "MultiStepLR", "milestones": [2], "gamma": 0.5},
        "trainer": {
            "checkpoint_dir": str(tmp_path / "ckpt"),
            "max_num_epochs": 1,
            "max_num_iterations": 1,
            "progress": "none",
            "log_images": False,
        },
        "loaders": {
            "num_workers": 0,
            "raw_internal_path": "raw",
            "label_internal_path": "label",
            "train": {"file_paths": [_volume(tmp_path / "a.h5")], **phase},
            "val": {"file_paths": [_volume(tmp_path / "b.h5")], **phase},
        },
    }
    path = tmp_path / "experiment.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _refs(cfg: ExperimentConfig) -> list[ComponentRef[Any]]:
    """Every component ref of a loaded experiment."""
    top = [cfg.model, cfg.loss, cfg.eval_metric, cfg.optimizer, cfg.lr_scheduler, cfg.predictor]
    refs = [r for r in top if r is not None]
    backend = getattr(cfg.predictor.config, "backend", None) if cfg.predictor else None
    if isinstance(backend, ComponentRef):  # a section nested in the predictor's keys
        refs.append(backend)
    assert cfg.loaders is not None
    refs.append(cfg.loaders.dataset_ref)
    for phase in (cfg.loaders.train, cfg.loaders.val, cfg.loaders.test):
        if phase is None:
            continue
        if phase.slice_builder is not None:
            refs.append(phase.slice_builder)
        t = phase.transformer
        refs += [*t.raw, *(t.label or []), *(t.weight or [])]
    return refs


@pytest.fixture()
def count_component_validations(monkeypatch):
    """Counts every validation of any component Config (constructor or model_validate)."""
    counts: Counter[str] = Counter()
    original_validate = ComponentConfig.model_validate.__func__  # type: ignore[attr-defined]
    original_init = ComponentConfig.__init__
    inside = [0]  # a Config class made after the patch runs __init__ inside model_validate

    def model_validate(cls, obj, *args, **kwargs):
        counts[cls.__qualname__] += 1
        inside[0] += 1
        try:
            return original_validate(cls, obj, *args, **kwargs)
        finally:
            inside[0] -= 1

    def init(self, /, **data):
        if not inside[0]:
            counts[type(self).__qualname__] += 1
        original_init(self, **data)

    monkeypatch.setattr(ComponentConfig, "model_validate", classmethod(model_validate))
    monkeypatch.setattr(ComponentConfig, "__init__", init)
    return counts


def test_sections_are_refs_holding_their_components_config(tmp_path, counting_components):
    cfg = load_config(_experiment(tmp_path))
    assert isinstance(cfg.model, ComponentRef)
    assert cfg.model.name == "CountingUNet"
    assert isinstance(cfg.model.config, CountingUNetConfig)
    assert cfg.model.config.f_maps == 6
    assert cfg.model.location == ("model",)
    assert cfg.optimizer.name == "Adam"  # the reference's default name, typed like the rest
    assert cfg.optimizer.config.learning_rate == 1e-3
    assert cfg.loaders is not None and cfg.loaders.train is not None
    builder = cfg.loaders.train.slice_builder
    assert builder is not None and isinstance(builder.config, CountingGridConfig)
    assert builder.location == ("loaders", "train", "slice_builder")
    assert cfg.loaders.train.patch_shape == (4, 16, 16)
    assert [r.name for r in cfg.loaders.train.transformer.raw] == ["Standardize", "ToTensor"]
    assert cfg.loaders.dataset_ref.config.raw_internal_path == "raw"


def test_f_maps_and_patch_shape_cross_config_registry_component_once(
    tmp_path, counting_components, count_component_validations
):
    """load_config -> registry -> component, each section validated once, no dict re-parsing."""
    from unet_core import formats
    from unet_core.training.run import build_trainer

    for name in formats.names():  # volume formats: one instance per process, not a section
        formats.get(name)
    count_component_validations.clear()
    cfg = load_config(_experiment(tmp_path))
    assert VALIDATIONS == {"model": 1, "slice_builder": 2}  # model once; train + val builders
    after_load = sum(count_component_validations.values())
    assert after_load == len(_refs(cfg))  # every section exactly once, nothing twice

    trainer = build_trainer(cfg)
    train_set = trainer.parts.loaders["train"].dataset.datasets[0]
    raw, label = train_set[0]

    # nothing was validated again while the engine built model, loss, metric, optimizer,
    # scheduler, datasets, slice builders and transforms and produced a patch
    assert sum(count_component_validations.values()) == after_load
    assert VALIDATIONS == {"model": 1, "slice_builder": 2}
    # the components received the loaded Config objects themselves, not dicts
    assert CountingUNet.received == [cfg.model.config]
    assert CountingUNet.received[0] is cfg.model.config
    assert cfg.loaders is not None and cfg.loaders.train and cfg.loaders.val
    assert CountingGrid.received[0] is cfg.loaders.train.slice_builder.config  # type: ignore[union-attr]
    assert CountingGrid.received[1] is cfg.loaders.val.slice_builder.config  # type: ignore[union-attr]
    # ... down to the tensor ops: the first conv has f_maps channels, the patch is patch_shape
    convs = [m for m in trainer.model.encoders[0].modules() if isinstance(m, torch.nn.Conv3d)]
    assert convs[-1].out_channels == 6  # the first level's feature maps
    assert convs[-1].weight.shape[0] == 6
    assert tuple(raw.shape) == (1, 4, 16, 16) and tuple(label.shape) == (1, 4, 16, 16)


def test_refs_dump_back_to_the_reference_form(tmp_path, counting_components):
    path = _experiment(tmp_path, model="UNet3D", builder="SliceBuilder")
    raw = yaml.safe_load(path.read_text())
    cfg = load_config(path)
    dumped = json.loads(json.dumps(cfg.model_dump(mode="json")))
    assert dumped["model"] == raw["model"]  # only the keys given, no defaults added
    assert dumped["optimizer"] == {"name": "Adam", "learning_rate": 1e-3}
    assert dumped["loaders"]["train"]["slice_builder"] == raw["loaders"]["train"]["slice_builder"]
    for pipe in ("raw", "label"):
        written = raw["loaders"]["train"]["transformer"][pipe]
        assert dumped["loaders"]["train"]["transformer"][pipe] == written
    assert dumped["loaders"]["raw_internal_path"] == "raw"
    # a saved config (checkpoint, config.json) loads back to the same typed config
    again = ExperimentConfig.model_validate(dumped)
    assert again.model == cfg.model and again.loaders.train.patch_shape == (4, 16, 16)  # type: ignore[union-attr]
    assert json.loads(json.dumps(again.model_dump(mode="json"))) == dumped


def test_set_override_numbers_are_typed_once(tmp_path, counting_components):
    cfg = load_config(
        _experiment(tmp_path),
        ["optimizer.learning_rate=2e-4", "loaders.train.slice_builder.patch_shape=[8,16,16]"],
    )
    assert cfg.optimizer.config.learning_rate == pytest.approx(2e-4)
    assert cfg.loaders is not None and cfg.loaders.train is not None
    assert cfg.loaders.train.patch_shape == (8, 16, 16)


def test_predictor_patch_halo_is_rejected_with_the_key_to_use(tmp_path, counting_components):
    path = _experiment(tmp_path, model="UNet3D", builder="SliceBuilder")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["predictor.patch_halo=[4,8,8]"])
    message = str(err.value)
    assert "predictor.patch_halo" in message
    assert "loaders.test.slice_builder.halo_shape" in message


def test_a_plain_basemodel_config_still_refuses_unknown_keys():
    """A plugin whose Config is a plain pydantic BaseModel (extra keys ignored by default) gets
    the same unknown-key check as ComponentConfig; an explicit extra="allow" is respected."""
    from pydantic import BaseModel, ConfigDict

    from unet_core.config.validate import check_component

    class PlainConfig(BaseModel):
        scale: float = 1.0

    class AllowingConfig(BaseModel):
        model_config = ConfigDict(extra="allow")
        scale: float = 1.0

    class Plain:
        Config = PlainConfig

        def __init__(self, scale: float = 1.0) -> None:
            self.scale = scale

        def __call__(self, array, rng):
            return array

    class Allowing(Plain):
        Config = AllowingConfig

    registry.register("transforms", "PlainCfgTransform", Plain)
    registry.register("transforms", "AllowingCfgTransform", Allowing)
    try:
        spec = {"name": "PlainCfgTransform", "scael": 2.0}
        (problem,), ref = check_component(("t",), "transforms", spec)
        assert ref is None and problem.path == ("t", "scael")
        assert "unknown key `scael` for transform PlainCfgTransform" in problem.message
        assert "did you mean `scale`" in problem.message
        problems, ref = check_component(
            ("t",), "transforms", {**spec, "name": "AllowingCfgTransform"}
        )
        assert problems == [] and ref is not None
    finally:
        registry.default_registry.unregister("transforms", "PlainCfgTransform")
        registry.default_registry.unregister("transforms", "AllowingCfgTransform")
