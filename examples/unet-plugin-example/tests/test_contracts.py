"""Every component of the package meets its kind's contract (``unet_core.testing``).

Run with ``pytest tests/`` after ``pip install --no-deps -e .``: the first test checks the
classes, the second what the installed entry points name (as `unet` loads them).
"""

from __future__ import annotations

import pytest
from unet_plugin_example.attention_unet import AttentionGateUNet3D
from unet_plugin_example.cldice import SoftClDiceLoss
from unet_plugin_example.lion import Lion
from unet_plugin_example.surface_dice import SurfaceDice
from unet_plugin_example.warmup_cosine import WarmupCosine

from unet_core import registry
from unet_core.testing import check_component

# kind, component, parameters (as a config's section gives them), options for the checks
COMPONENTS = [
    ("models", AttentionGateUNet3D, {"in_channels": 1, "out_channels": 2, "f_maps": 4}, {}),
    ("losses", SoftClDiceLoss, {"iterations": 2}, {"out_channels": 1}),
    ("metrics", SurfaceDice, {}, {}),
    ("optimizers", Lion, {"learning_rate": 0.01}, {}),
    ("lr_schedulers", WarmupCosine, {"total_steps": 3, "warmup_steps": 1}, {}),
]


@pytest.mark.parametrize(("kind", "component", "params", "options"), COMPONENTS)
def test_component_meets_its_contract(kind, component, params, options):
    check_component(kind, component, params, **options)


@pytest.mark.parametrize(("kind", "component"), [(k, c) for k, c, _, _ in COMPONENTS])
def test_entry_point_names_the_component(kind, component):
    assert registry.get(kind, component.__name__) is component
