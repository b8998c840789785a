"""The U-Net family: reference-identical state dicts, output semantics, validation, shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from compat.deterministic_weights import deterministic_input, deterministic_state

from unet_core import registry
from unet_core.engine.checkpoint import load_checkpoint, load_model_weights
from unet_core.errors import ConfigError, DataError

#: state-dict keys and shapes of pytorch3dunet's models, recorded once from the reference
COMPAT = Path(__file__).resolve().parent / "compat" / "pytorch3dunet_state_dicts.json"
#: the reference's forward outputs at formula weights (tests/compat/generate_forward_record.py)
FORWARD = Path(__file__).resolve().parent / "compat" / "pytorch3dunet_forward.json"
NAMES = ["UNet3D", "ResidualUNet3D", "ResidualUNetSE3D", "UNet2D", "ResidualUNet2D"]


def build(name: str, device: str = "cpu", **params: Any) -> torch.nn.Module:
    with torch.device(device):
        return registry.create("models", {"name": name, **params})


def tiny(name: str, **params: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    kw: dict[str, Any] = {"in_channels": 1, "out_channels": 1, "f_maps": 4, "num_groups": 4}
    kw["num_levels"] = 3
    kw.update(params)
    if isinstance(kw["f_maps"], list):
        del kw["num_levels"]
    return build(name, **kw)


def shapes(model: torch.nn.Module) -> list[tuple[str, list[int]]]:
    return [(k, list(v.shape)) for k, v in model.state_dict().items()]


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- reference compatibility ------------------------------------------------------------------
@pytest.fixture(scope="module")
def compat() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(COMPAT.read_text())
    return data


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_equals_reference_json(compat: dict[str, Any], name: str) -> None:
    ref = compat[name]
    model = build(name, "meta", **ref["constructor_kwargs"])
    assert shapes(model) == [(k, list(v)) for k, v in ref["state_dict"].items()]
    assert n_params(model) == ref["num_parameters"]


FORWARD_CASES = json.loads(FORWARD.read_text())["cases"]


@pytest.mark.parametrize(
    "case", FORWARD_CASES, ids=[f"{c['model']}-{i}" for i, c in enumerate(FORWARD_CASES)]
)
def test_forward_outputs_equal_reference(case: dict[str, Any]) -> None:
    """Same weights, same input -> the reference's pinned outputs (pytorch3dunet 1.9.6).

    Tolerance: 2e-5 relative + 2e-5 absolute per value (float32 convolutions of a few layers;
    observed here: at most 1.2e-7 per value and 2e-6 on a sum, float32 rounding), sums alike.
    """
    model = build(case["model"], **case["kwargs"])
    model.load_state_dict(deterministic_state(model.state_dict()))
    model.eval()
    with torch.no_grad():
        x = deterministic_input(tuple(case["input_shape"]))
        outputs = {"output": model(x), "logits": model.logits(x)}
    for which, got in outputs.items():
        pinned = case[which]
        assert list(got.shape) == pinned["shape"], which
        flat = got.double().flatten()
        values = flat[torch.tensor(pinned["positions"])].tolist()
        assert values == pytest.approx(pinned["values"], rel=2e-5, abs=2e-5), which
        for stat in ("sum", "mean", "std"):
            got_stat = getattr(flat, stat)().item()
            assert got_stat == pytest.approx(pinned[stat], rel=2e-5, abs=2e-5), (which, stat)


# Parameter counts of the reference's own models (pytorch3dunet 1.9.6, torch 2.13, CPU), obtained
# by building each configuration with pytorch3dunet.unet3d.model.<name>(in_channels=1,
# out_channels=1, **params) in a separate venv and summing p.numel() over model.parameters().
REFERENCE_COUNTS = [
    ("UNet3D", {"f_maps": 32}, 4081267),
    ("UNet3D", {"f_maps": 32, "layer_order": "bcr", "num_levels": 3}, 983155),
    ("UNet3D", {"f_maps": [16, 32, 64, 128, 256], "layer_order": "cr"}, 4117553),
    ("UNet3D", {"f_maps": 16, "out_channels": 3, "conv_upscale": 1}, 1460517),
    ("ResidualUNet3D", {"f_maps": 32, "num_levels": 4}, 7068961),
    ("ResidualUNetSE3D", {"f_maps": 16, "layer_order": "bcr"}, 7331386),
    ("UNet2D", {"f_maps": [32, 64, 128], "layer_order": "bcr", "in_channels": 3}, 328823),
    ("ResidualUNet2D", {"f_maps": 16, "num_levels": 3, "layer_order": "cge"}, 146193),
]


@pytest.mark.parametrize(("name", "params", "count"), REFERENCE_COUNTS)
def test_parameter_counts_match_reference(name: str, params: dict[str, Any], count: int) -> None:
    kw = {"in_channels": 1, "out_channels": 1, **params}
    assert n_params(build(name, "meta", **kw)) == count


def test_non_default_keys_follow_reference_naming() -> None:
    model = build("UNet3D", "meta", in_channels=1, out_channels=1, f_maps=8, layer_order="bcr")
    keys = list(model.state_dict())
    assert keys[:6] == [
        "encoders.0.basic_module.SingleConv1.batchnorm.weight",
        "encoders.0.basic_module.SingleConv1.batchnorm.bias",
        "encoders.0.basic_module.SingleConv1.batchnorm.running_mean",
        "encoders.0.basic_module.SingleConv1.batchnorm.running_var",
        "encoders.0.basic_module.SingleConv1.batchnorm.num_batches_tracked",
        "encoders.0.basic_module.SingleConv1.conv.weight",
    ]
    assert "encoders.0.basic_module.SingleConv1.conv.bias" not in keys  # norm -> no bias
    no_norm = build("UNet3D", "meta", in_channels=1, out_channels=1, f_maps=8, layer_order="cr")
    assert "encoders.0.basic_module.SingleConv1.conv.bias" in no_norm.state_dict()


def test_reference_checkpoint_round_trip(tmp_path: Path) -> None:
    """A file laid out as the reference's trainer writes it loads and reproduces outputs."""
    src = tiny("ResidualUNetSE3D")
    opt = torch.optim.Adam(src.parameters())
    path = tmp_path / "last_checkpoint.pytorch"
    torch.save(
        {
            "num_epochs": 1,
            "num_iterations": 2,
            "model_state_dict": src.state_dict(),
            "best_eval_score": 0.5,
            "optimizer_state_dict": opt.state_dict(),
        },
        path,
    )
    dst = tiny("ResidualUNetSE3D")
    for p in dst.parameters():
        torch.nn.init.zeros_(p)
    load_model_weights(dst, path)
    x = torch.randn(1, 1, 12, 16, 20)
    src.eval(), dst.eval()
    with torch.no_grad():
        assert torch.equal(src(x), dst(x))
    assert load_checkpoint(path)["num_iterations"] == 2


# -- outputs --------------------------------------------------------------------------------------
ODD_INPUTS = {3: (1, 1, 33, 65, 65), 2: (1, 1, 65, 65)}


@pytest.mark.parametrize("name", NAMES)
def test_odd_sizes_and_eval_range(name: str) -> None:
    model = tiny(name).eval()
    x = torch.randn(ODD_INPUTS[model.spatial_dims])
    with torch.no_grad():
        probs = model(x)
        logits = model.logits(x)
    assert probs.shape == x.shape
    assert probs.min() >= 0 and probs.max() <= 1
    assert torch.allclose(probs, torch.sigmoid(logits))
    assert not torch.allclose(probs, logits)  # really logits, not probabilities


def test_train_mode_returns_logits_and_softmax_in_eval() -> None:
    model = tiny("UNet2D", out_channels=3, final_sigmoid=False)
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        train_out = model(x)
        model.eval()
        probs = model(x)
    assert torch.allclose(train_out, model.logits(x).detach())
    assert torch.allclose(probs.sum(dim=1), torch.ones(2, 16, 16))
    assert torch.allclose(probs, torch.softmax(train_out, dim=1))


def test_regression_has_no_final_activation() -> None:
    model = tiny("UNet3D", is_segmentation=False).eval()
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), model.logits(x))
    assert model.final_activation(torch.tensor([-3.0])).item() == -3.0


def test_contract_attributes() -> None:
    model = tiny("ResidualUNet2D", in_channels=2, out_channels=3, final_sigmoid=False)
    assert (model.in_channels, model.out_channels, model.spatial_dims) == (2, 3, 2)
    assert model.is_segmentation is True and model.final_sigmoid is False
    assert tiny("ResidualUNetSE3D").spatial_dims == 3


def test_wrong_input_layout_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"squeeze that axis"):
        tiny("UNet2D")(torch.randn(1, 1, 1, 16, 16))
    with pytest.raises(DataError, match="in_channels = 1"):
        tiny("UNet3D")(torch.randn(1, 2, 8, 8, 8))


def test_residual_models_work_with_interpolation_upsampling() -> None:
    """The reference crashes here (§12.7); concatenation + the block's 1x1 conv fix it."""
    for mode in ("nearest", "trilinear", "area", "deconv"):
        model = tiny("ResidualUNet3D", upsample=mode)
        assert model(torch.randn(1, 1, 9, 17, 16)).shape == (1, 1, 9, 17, 16)
    keys = tiny("ResidualUNet3D", upsample="nearest").state_dict()
    assert list(keys["decoders.0.basic_module.conv1.weight"].shape) == [8, 24, 1, 1, 1]


def test_non_doubling_f_maps_with_deconv_and_anisotropic_pooling() -> None:
    model = tiny(
        "UNet3D",
        f_maps=[4, 8, 12],
        upsample="deconv",
        pool_kernel_size=[1, 2, 2],
        conv_kernel_size=[1, 3, 3],
        conv_padding=[0, 1, 1],
    )
    assert model(torch.randn(1, 1, 3, 17, 16)).shape == (1, 1, 3, 17, 16)


@pytest.mark.parametrize("se", ["scse", "cse", "sse"])
def test_se_variants(se: str) -> None:
    model = tiny("ResidualUNetSE3D", se_module=se, se_reduction_ratio=2)
    assert model(torch.randn(1, 1, 8, 8, 8)).shape == (1, 1, 8, 8, 8)
    keys = "".join(model.state_dict())
    assert ("se_module.cSE.fc1" in keys) == (se == "scse")
    assert ("se_module.fc1" in keys) == (se == "cse")
    assert ("se_module.conv" in keys) == (se == "sse")


def test_channels_last_matches_contiguous() -> None:
    for name, fmt in (("UNet3D", torch.channels_last_3d), ("ResidualUNet2D", torch.channels_last)):
        model = tiny(name).eval()
        x = torch.randn(ODD_INPUTS[model.spatial_dims][:2] + (16,) * model.spatial_dims)
        with torch.no_grad():
            ref = model(x)
            model.to(memory_format=fmt)
            out = model(x.contiguous(memory_format=fmt))
        assert torch.allclose(out, ref, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_matches_eager() -> None:
    """fullgraph=True: the forward has no graph breaks (inductor for eval, as predictors use)."""
    model = tiny("UNet3D", num_levels=2)
    x = torch.randn(1, 1, 8, 8, 8)
    eager_loss = model(x).square().mean()
    eager_loss.backward()
    eager_grad = model.final_conv.weight.grad.clone()  # type: ignore[union-attr]
    model.zero_grad()
    train_loss = torch.compile(model, fullgraph=True, backend="aot_eager")(x).square().mean()
    train_loss.backward()
    assert torch.allclose(train_loss, eager_loss, atol=1e-6)
    assert torch.allclose(model.final_conv.weight.grad, eager_grad, atol=1e-5)  # type: ignore[arg-type]
    model.eval()
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, fullgraph=True)(x)
    assert torch.allclose(compiled, eager, atol=1e-5)


# -- validation ---------------------------------------------------------------------------------
BAD = [
    ({"layer_order": "gcx"}, "unknown letter"),
    ({"layer_order": "rcg"}, "starts with the activation 'r'"),
    ({"layer_order": "gr"}, "has no 'c'"),
    ({"layer_order": "gcrr"}, "repeats"),
    ({"f_maps": 12}, "GroupNorm in encoders.1.basic_module.SingleConv1 has 12 channels"),
    ({"f_maps": [16, 32, 64], "num_levels": 4}, "f_maps has 3 levels but model.num_levels is 4"),
    ({"f_maps": [16]}, "at least 2"),
    ({"num_levels": 1}, "num_levels must be at least 2"),
    ({"upsample": "bilinear"}, "needs 'trilinear'"),
    ({"upsample": "linear"}, "interpolates 1D"),
    ({"upsample": "none"}, "upsample 'none'"),
    ({"upsample": "cubic"}, "upsample"),
    ({"conv_kernel_size": [3, 3]}, "needs one int or 3"),
    ({"conv_kernel_size": 4}, "must be odd"),
    ({"dropout_prob": [0.1]}, "2 items"),
    ({"dropout_prob": 1.5}, r"within \[0, 1\]"),
    ({"se_module": "scse"}, "Extra inputs"),  # UNet3D has no SE option
    ({"f_mpas": 32}, "f_mpas"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_invalid_configs_are_rejected_with_the_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        registry.create("models", {"name": "UNet3D", "in_channels": 1, "out_channels": 1, **params})


def test_group_norm_names_first_failing_layer_in_decoder() -> None:
    with pytest.raises(ConfigError, match=r"decoders.0.basic_module.SingleConv1 has 12 channels"):
        registry.create("models", {"name": "UNet2D", "in_channels": 1, "out_channels": 1,
                                   "f_maps": 4, "num_levels": 2})  # fmt: skip


def test_reference_example_keys_are_accepted() -> None:
    """Model sections of the reference's shipped configs validate unchanged."""
    for spec in (
        {"name": "UNet3D", "in_channels": 1, "out_channels": 1, "layer_order": "gcr",
         "f_maps": [32, 64, 128, 256], "num_groups": 8, "final_sigmoid": True},
        {"name": "UNet2D", "in_channels": 1, "out_channels": 1, "layer_order": "bcr",
         "f_maps": [32, 64, 128], "final_sigmoid": True, "is_segmentation": True},
        {"name": "ResidualUNet3D", "in_channels": 1, "out_channels": 1, "f_maps": 32,
         "layer_order": "gcr", "num_groups": 8, "final_sigmoid": True, "is_segmentation": True},
    ):  # fmt: skip
        registry.validate("models", spec)


def test_every_config_field_is_documented() -> None:
    for name in NAMES:
        for field, info in registry.config_model("models", name).model_fields.items():
            assert info.description, f"{name}.{field} has no description"


# -- patch helpers ---------------------------------------------------------------------------------
def cls(name: str) -> Any:
    return registry.get("models", name)


CFG = {"in_channels": 1, "out_channels": 1}


def test_check_patch_shape() -> None:
    unet3d, unet2d = cls("UNet3D"), cls("UNet2D")
    assert unet3d.check_patch_shape(CFG, [80, 170, 170]) is None  # the reference's ovule patch
    strict = unet3d.check_patch_shape(CFG, [80, 170, 170], strict=True)
    assert strict is not None and "multiples of [8, 8, 8]" in strict and "[80, 168, 168]" in strict
    assert "too small" in unet3d.check_patch_shape(CFG, [4, 64, 64])
    assert "z = 4" in unet2d.check_patch_shape(CFG, [4, 64, 64])
    assert unet2d.check_patch_shape(CFG, [1, 64, 64]) is None
    assert unet2d.check_patch_shape(CFG, [64, 64]) is None
    assert "3 entries" in unet3d.check_patch_shape(CFG, [64, 64])
    aniso = {**CFG, "pool_kernel_size": [1, 2, 2]}
    assert unet3d.patch_multiple(aniso) == (1, 8, 8)
    assert unet3d.check_patch_shape(aniso, [3, 64, 64], strict=True) is None


def test_receptive_field_hand_computed() -> None:
    # 2 levels, two 3-convs per level, 2-pooling, nearest upsampling:
    # 1 + 2+2 (level 0) + 1 (pool) + 4+4 (level 1, stride 2) + 2+2 (decoder) = 18
    assert cls("UNet2D").receptive_field({**CFG, "num_levels": 2}) == (18, 18)
    # 4 levels: the same sum gives 96 for outputs aligned with the pooling grid; nearest
    # upsampling's rounding lets misaligned outputs see 4 more (the gradient test confirms)
    assert cls("UNet3D").receptive_field(CFG) == (100, 100, 100)


def test_receptive_field_matches_gradient_extent() -> None:
    """Average pooling and no norm make every voxel in the field get a non-zero gradient."""
    for name, extra in (
        ("UNet2D", {}),
        ("UNet2D", {"upsample": "bilinear"}),
        ("ResidualUNet2D", {}),
    ):
        spec = {**CFG, "f_maps": 4, "num_levels": 3, "num_groups": 1, "pool_type": "avg",
                "layer_order": "ce", **extra}  # fmt: skip
        torch.manual_seed(0)
        model = build(name, **spec).double()
        widest = 0
        for c in range(40, 44):
            x = torch.randn(1, 1, 96, 96, dtype=torch.float64, requires_grad=True)
            model(x)[0, 0, c, c].backward()
            assert x.grad is not None
            rows = (x.grad[0, 0].abs() > 0).any(dim=1).nonzero()
            widest = max(widest, int(rows.max() - rows.min() + 1))
        assert cls(name).receptive_field(spec) == (widest, widest)


def test_output_shape_with_unpadded_convs() -> None:
    # 2 levels, conv_padding 0: 40 -> 36 -> pool 18 -> 14; decoder on the 36 skip -> 32
    cfg = {**CFG, "f_maps": 8, "num_levels": 2, "conv_padding": 0}
    assert cls("UNet3D").output_shape(cfg, [40, 40, 40]) == (32, 32, 32)
    model = build("UNet3D", **cfg)
    assert model(torch.randn(1, 1, 40, 40, 40)).shape[2:] == (32, 32, 32)


def test_reference_style_construction_and_return_logits() -> None:
    """Code written against the reference keeps working: positional args, return_logits."""
    model_cls = registry.get("models", "UNet3D")
    model = model_cls(1, 2, False, 8, num_groups=4, num_levels=2)
    assert (model.out_channels, model.final_sigmoid, model.config.f_maps) == (2, False, 8)
    probs, logits = model(torch.randn(1, 1, 8, 8, 8), return_logits=True)  # train mode too
    assert torch.allclose(probs, torch.softmax(logits, dim=1))
    assert model_cls({"name": "UNet3D", "in_channels": 1, "out_channels": 1}).config.f_maps == 64
