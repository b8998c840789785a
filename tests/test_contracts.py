"""The contract of every kind: built-ins meet it, a component that does not is reported broken
when it is loaded, and the plugin-author kit (`unet_core.testing`) finds real violations."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

from unet_core import registry
from unet_core.contracts import CONTRACTS, capabilities, declared
from unet_core.discovery import Record
from unet_core.errors import PluginError
from unet_core.interfaces import ComponentConfig, Loss, Metric
from unet_core.kinds import KINDS
from unet_core.registry import PluginWarning, Registry
from unet_core.testing import (
    ContractViolation,
    behaviour_problems,
    check_component,
    contract_problems,
)

TINY_UNET = {"in_channels": 1, "out_channels": 2, "f_maps": 8, "num_groups": 4, "num_levels": 2}
LABELS = np.random.default_rng(0).integers(0, 4, (8, 16, 16)).astype(np.int64)
INSTANCES = torch.from_numpy(LABELS[None, None])
#: (params, options) for built-ins whose defaults need something; everything else gets ({}, {}).
BUILTIN_SETUP: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {
    **{("models", m): (TINY_UNET, {}) for m in ("UNet3D", "ResidualUNet3D", "ResidualUNetSE3D")},
    **{("models", m): (TINY_UNET, {"spatial": (16, 16)}) for m in ("UNet2D", "ResidualUNet2D")},
    ("losses", "WeightedSmoothL1Loss"): ({"threshold": 0.5, "initial_weight": 0.1}, {}),
    ("metrics", "AdaptedRandError"): ({}, {"prediction": INSTANCES.float(), "target": INSTANCES}),
    ("metrics", "GenericAveragePrecision"): (
        {},
        {"prediction": INSTANCES.float(), "target": INSTANCES},
    ),
    ("metrics", "GenericAdaptedRandError"): (
        {"input_channels": [0]},
        {"prediction": torch.rand(1, 1, 8, 16, 16), "target": INSTANCES},
    ),
    ("metrics", "BlobsBoundaryAveragePrecision"): (
        {},
        {"prediction": torch.rand(1, 2, 8, 16, 16), "target": INSTANCES},
    ),
    ("transforms", "CropToFixed"): ({"size": [8, 8]}, {"keeps_shape": False}),
    ("transforms", "ElasticDeformation"): ({"spline_order": 1}, {}),
    ("transforms", "LabelToAffinities"): ({"offsets": [1]}, {"array": LABELS}),
    ("transforms", "LabelToZAffinities"): ({"offsets": [1]}, {"array": LABELS}),
    ("transforms", "LabelToBoundaryAndAffinities"): (
        {"xy_offsets": [1], "z_offsets": [1]},
        {"array": LABELS},
    ),
    ("transforms", "LabelToMaskAndAffinities"): (
        {"xy_offsets": [1], "z_offsets": [1]},
        {"array": LABELS},
    ),
    ("transforms", "RgbToLabel"): ({}, {"array": np.zeros((3, 8, 16, 16), np.uint8)}),
    ("transforms", "ToTensor"): ({"expand_dims": False}, {}),
    ("slice_builders", "SliceBuilder"): (
        {"patch_shape": [8, 16, 16], "stride_shape": [8, 8, 8], "skip_shape_check": True},
        {},
    ),  # fmt: skip
    ("slice_builders", "FilterSliceBuilder"): (
        {
            "patch_shape": [8, 16, 16],
            "stride_shape": [8, 8, 8],
            "threshold": 0.0,
            "skip_shape_check": True,
        },  # fmt: skip
        {"raw": np.zeros(LABELS.shape, np.float32), "label": LABELS},
    ),
    ("optimizers", "SparseAdam"): None,  # refuses dense (U-Net) gradients by design
    ("lr_schedulers", "StepLR"): ({"step_size": 1}, {}),
    ("lr_schedulers", "MultiStepLR"): ({"milestones": [1]}, {}),
    ("lr_schedulers", "ExponentialLR"): ({"gamma": 0.5}, {}),
    ("lr_schedulers", "CosineAnnealingLR"): ({"T_max": 2}, {}),
    ("lr_schedulers", "CosineAnnealingWarmRestarts"): ({"T_0": 2}, {}),
    ("lr_schedulers", "CyclicLR"): ({"base_lr": 0.01, "max_lr": 0.1}, {}),
    ("lr_schedulers", "OneCycleLR"): ({"max_lr": 0.1, "total_steps": 10}, {}),
}


def _builtins(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [
        (kind, rec.name)
        for kind in kinds
        for rec in registry.records(kind)
        if rec.distribution == "unet-core"
    ]


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_builtin_meets_its_static_contract(kind: str) -> None:
    names = [n for k, n in _builtins((kind,))]
    assert names
    for name in names:
        declared_obj = registry.default_registry._declared(kind, name)
        assert contract_problems(kind, declared_obj) == [], (kind, name)


BEHAVING = ("models", "losses", "metrics", "transforms", "postprocessors", "slice_builders",
            "optimizers", "lr_schedulers")  # fmt: skip


@pytest.mark.parametrize(("kind", "name"), _builtins(BEHAVING))
def test_every_builtin_behaves_as_its_contract_says(kind: str, name: str) -> None:
    setup = BUILTIN_SETUP.get((kind, name), ({}, {}))
    if setup is None:
        pytest.skip(f"{name} cannot be exercised on a dense parameter")
    params, options = setup
    check_component(kind, registry.default_registry._declared(kind, name), params, **options)


def test_every_kind_has_a_contract_with_typed_capability_defaults() -> None:
    assert set(CONTRACTS) == set(KINDS)
    assert capabilities("losses")["needs_weight"] == (bool, False)
    assert capabilities("metrics")["higher_is_better"] == (bool, True)
    assert capabilities("optimizers")["needs_closure"] == (bool, False)
    assert capabilities("lr_schedulers")["needs_metric"] == (bool, False)
    assert capabilities("models")["spatial_dims"] == (int, 3)
    assert capabilities("predictors")["retiles"] == (bool, False)

    class Plain:  # declares nothing: the contract's defaults apply
        pass

    class Inherits(Loss):  # inherits the contract: its defaults, overridable
        needs_weight = True

        def __call__(self, logits: Any, target: Any, *args: Any) -> Any:
            return logits

    assert declared("losses", Plain, "needs_weight") is False
    assert declared("losses", Inherits, "needs_weight") is True
    assert declared("metrics", Plain(), "higher_is_better") is True
    with pytest.raises(KeyError):  # an engine typo cannot read a silent default
        declared("losses", Plain, "needs_weights")


# -- components that break their contract are reported broken when loaded --------------------
BROKEN_MODULE = '''
from typing import ClassVar
from unet_core.interfaces import ComponentConfig, Metric


class Config(ComponentConfig):
    pass


class NotCallableLoss:
    """Its instances cannot be called: the trainer would fail at the first iteration."""
    Config = Config


class StubMetric(Metric):
    """Inherits the contract but never implements __call__ (the Protocol's stub)."""
    Config = Config


class VagueMetric:
    Config = Config
    higher_is_better = "yes"

    def __call__(self, prediction, target):
        return 1.0


class NoFactoryDataset:
    Config = Config

    def __getitem__(self, i):
        return i

    def __len__(self):
        return 1


class MaskLoss:
    Config = Config
    target_layout = "mask"

    def __call__(self, logits, target):
        return (logits - target).mean()


class FineLoss:
    Config = Config

    def __call__(self, logits, target):
        return (logits - target).mean()
'''


@pytest.fixture
def broken_reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    (tmp_path / "contract_breakers.py").write_text(BROKEN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = Registry()
    entries = [("losses", "NotCallableLoss"), ("metrics", "StubMetric"),
               ("metrics", "VagueMetric"), ("datasets", "NoFactoryDataset"),
               ("losses", "MaskLoss"), ("losses", "FineLoss")]  # fmt: skip
    for kind, name in entries:
        reg._all()[kind][name] = Record(
            kind, name, f"contract_breakers:{name}", "breaker-pkg", "1.0"
        )
    return reg


@pytest.mark.parametrize(
    ("kind", "name", "reason"),
    [
        ("losses", "NotCallableLoss", "its instances are not callable"),
        ("metrics", "StubMetric", "its instances are not callable"),
        ("metrics", "VagueMetric", "`higher_is_better` must be bool, got 'yes'"),
        (
            "losses",
            "MaskLoss",
            "`target_layout` must be one of 'masks', 'indices', 'dense', got 'mask'",
        ),  # fmt: skip
        ("datasets", "NoFactoryDataset", "`create_datasets` is missing or not callable"),
    ],
)
def test_component_missing_what_its_contract_requires_is_broken(
    broken_reg: Registry, kind: str, name: str, reason: str
) -> None:
    with pytest.raises(PluginError) as info:
        broken_reg.get(kind, name)
    message = str(info.value)
    assert "from breaker-pkg 1.0 is broken: it does not meet the" in message
    assert reason in message
    rec = broken_reg.record(kind, name)
    assert rec.status == "broken" and reason in (rec.error or "")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broken_reg.load_all(kind)
    assert any(issubclass(w.category, PluginWarning) and name in str(w.message) for w in caught)
    assert broken_reg.get("losses", "FineLoss").__name__ == "FineLoss"  # the others still work


def test_deferred_implementation_is_checked_when_resolved(
    broken_reg: Registry, tmp_path: Path
) -> None:
    from unet_core.interfaces import Deferred

    class Config(ComponentConfig):
        pass

    broken_reg.register("losses", "LazyBroken", Deferred("contract_breakers:NotCallableLoss",
                                                         Config))  # fmt: skip
    assert broken_reg.validate("losses", {"name": "LazyBroken"})[0] == "LazyBroken"
    with pytest.raises(PluginError, match="LazyBroken.*its instances are not callable"):
        broken_reg.create("losses", {"name": "LazyBroken"})


def test_register_refuses_a_component_that_breaks_its_contract() -> None:
    class NoStep:
        class Config(ComponentConfig):
            pass

        needs_metric: ClassVar[object] = 1

    with pytest.raises(PluginError, match="`needs_metric` must be bool, got 1"):
        Registry().register("lr_schedulers", "NoStep", NoStep)


# -- the kit finds behaviour that breaks the contract -----------------------------------------
class _Empty(ComponentConfig):
    pass


class WrongChannels(torch.nn.Module):
    Config = _Empty
    in_channels, out_channels = 1, 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 2, 1)  # says 3 channels, gives 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PerVoxelLoss(torch.nn.Module):
    Config = _Empty

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (logits - target).abs()  # not reduced to a scalar


class GlobalRandomNoise:
    Config = _Empty

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return array + np.random.random(array.shape)  # ignores rng: not reproducible


class NaNMetric(Metric):
    Config = _Empty

    def __call__(self, prediction: Any, target: Any) -> float:
        return float("nan")


class NoClosureLBFGS:
    """Builds an LBFGS but does not declare needs_closure: the trainer would call step()."""

    Config = _Empty

    @classmethod
    def from_config(cls, config: Any, params: Any) -> torch.optim.Optimizer:
        return torch.optim.LBFGS(params)


@pytest.mark.parametrize(
    ("kind", "component", "reason"),
    [
        (
            "models",
            WrongChannels,
            "train-mode output has shape (2, 2, 16, 16, 16), expected (2, 3, 16, 16, 16)",
        ),  # fmt: skip
        ("losses", PerVoxelLoss, "expected a scalar tensor"),
        ("transforms", GlobalRandomNoise, "generators seeded alike gave different results"),
        ("metrics", NaNMetric, "it returned nan on finite inputs"),
        ("optimizers", NoClosureLBFGS, "while exercising it"),
    ],
)
def test_kit_reports_behaviour_that_breaks_the_contract(
    kind: str, component: Any, reason: str
) -> None:
    assert contract_problems(kind, component) == []
    found = behaviour_problems(kind, component)
    assert any(reason in p for p in found), found
    with pytest.raises(ContractViolation, match=component.__name__) as info:
        check_component(kind, component)
    assert info.value.problems == found


def test_kit_reports_static_problems_without_building() -> None:
    class NoConfig:
        pass

    with pytest.raises(ContractViolation, match="no Pydantic v2 'Config' model"):
        check_component("losses", NoConfig)
    assert contract_problems("loss", NoConfig)[0].startswith("unknown kind 'loss'")


def test_architecture_doc_lists_every_contract_with_its_defaults() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| ") and line.count("|") == 5}  # fmt: skip
    for kind, group in KINDS.items():
        row = rows.get(kind)
        assert row is not None and f"`{group}`" in row, kind
        for name, (_, default) in capabilities(kind).items():
            assert f"`{name}` ({default!r}" in row, (kind, name)
