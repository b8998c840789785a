"""What a U-Net state dict says about its config: the model plugin's explanation of a checkpoint
that does not fit (``explain_mismatch``), naming the ``model.*`` keys that probably differ."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_ENC = re.compile(r"^encoders\.(\d+)\.")
_DEC = re.compile(r"^decoders\.(\d+)\.")


def infer_unet_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Config facts readable from a reference-style U-Net state dict (missing ones omitted)."""
    facts: dict[str, Any] = {}
    keys = list(state)
    enc_ids = sorted({int(m.group(1)) for k in keys if (m := _ENC.match(k))})
    if not enc_ids:
        return facts
    facts["num_levels"] = len(enc_ids)
    convs = [k for k in keys if k.endswith("conv.weight") and ".se_module." not in k]
    if convs:
        facts["spatial_dims"] = state[convs[0]].dim() - 2
    if any(".SingleConv1." in k for k in keys):
        family, out_conv, in_convs = "UNet", "SingleConv2.conv.weight", ["SingleConv1.conv.weight"]
    else:
        family, out_conv, in_convs = "ResidualUNet", "conv2.conv.weight", ["conv1.weight"]
        in_convs.append("conv2.conv.weight")
        if any(".se_module." in k for k in keys):
            family = "ResidualUNetSE"
    dims = facts.get("spatial_dims")
    if dims in (2, 3):
        facts["model"] = f"{family}{dims}D"
    f_maps = []
    for i in enc_ids:
        w = state.get(f"encoders.{i}.basic_module.{out_conv}")
        if w is not None:
            f_maps.append(int(w.shape[0]))
    if len(f_maps) == len(enc_ids):
        facts["f_maps"] = f_maps
    for suffix in in_convs:
        w = state.get(f"encoders.0.basic_module.{suffix}")
        if w is not None:
            facts["in_channels"] = int(w.shape[1])
            break
    if "final_conv.weight" in state:
        facts["out_channels"] = int(state["final_conv.weight"].shape[0])
    norms = {"groupnorm": "g", "batchnorm": "b"}
    found = [letter for word, letter in norms.items() if any(f".{word}." in k for k in keys)]
    facts["norm"] = found[0] if len(found) == 1 else ("none" if not found else "+".join(found))
    if any(_DEC.match(k) for k in keys):
        deconv = any("upsampling.upsample.conv_transposed" in k for k in keys)
        facts["upsampling"] = "transposed conv" if deconv else "interpolation"
    return facts


_NORM_WORDS = {"g": "GroupNorm ('g')", "b": "BatchNorm ('b')", "none": "no normalisation"}


def guess_config_differences(
    found: Mapping[str, Any],
    expected: Mapping[str, Any],
    model_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Human phrases such as 'model.f_maps: checkpoint [32, 64] vs model [64, 128]'."""
    ck, mo = infer_unet_config(found), infer_unet_config(expected)
    cfg = model_config or {}
    out = []
    for field in ("model", "in_channels", "out_channels", "num_levels", "f_maps"):
        if field in ck and field in mo and ck[field] != mo[field]:
            key = "model.name" if field == "model" else f"model.{field}"
            said = f", config says {cfg[key[6:]]!r}" if key[6:] in cfg else ""
            out.append(f"{key}: checkpoint {_fmt(ck[field])} vs model {_fmt(mo[field])}{said}")
    if "f_maps" in ck and "f_maps" in mo and ck["f_maps"] != mo["f_maps"]:
        if len(ck["f_maps"]) == len(mo["f_maps"]) and ck["f_maps"][0] != mo["f_maps"][0]:
            out[-1] += f" (f_maps: {ck['f_maps'][0]} vs {mo['f_maps'][0]})"
    if ck.get("norm") != mo.get("norm") and "norm" in ck and "norm" in mo:
        said = f", config says {cfg['layer_order']!r}" if "layer_order" in cfg else ""
        out.append(
            f"model.layer_order: checkpoint uses {_NORM_WORDS.get(ck['norm'], ck['norm'])} "
            f"vs model {_NORM_WORDS.get(mo['norm'], mo['norm'])}{said}"
        )
    if ck.get("upsampling") != mo.get("upsampling") and "upsampling" in ck and "upsampling" in mo:
        said = f", config says {cfg['upsample']!r}" if "upsample" in cfg else ""
        out.append(
            f"model.upsample: checkpoint decoders use {ck['upsampling']} vs model "
            f"{mo['upsampling']}{said}"
        )
    if _legacy_resnet(found):
        out.append(
            "the checkpoint looks like a pytorch-3dunet model from before 2023-03 "
            "(ExtResNetBlock), whose keys differ from current releases"
        )
    return out


def _legacy_resnet(state: Mapping[str, Any]) -> bool:
    return any(".basic_module.conv1.conv.weight" in k for k in state) and not any(
        ".SingleConv1." in k for k in state
    )


def _fmt(value: Any) -> str:
    return str(value) if not isinstance(value, str) else value


# -- saving -------------------------------------------------------------------------------------
