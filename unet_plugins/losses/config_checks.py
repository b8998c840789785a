"""Config-time checks of a loss section against the model section: class counts, weight
lengths, ``pos_weight`` broadcasting, and the activation the loss trains vs. the one the
model applies. Torch-free, so ``unet config validate`` stays fast."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from unet_core.errors import ConfigError
from unet_plugins.losses.configs import LossConfig, nested_shape


def pos_weight_problem(value: Any, out_channels: int) -> str | None:
    """Why ``pos_weight`` cannot weigh the channels of ``out_channels`` logits, or None."""
    shape = nested_shape(value)
    if len(shape) == 1 and shape[0] != out_channels:
        return (
            f"loss.pos_weight has {shape[0]} values but model.out_channels is {out_channels}; "
            "give one pos_weight per output channel."
        )
    if len(shape) >= 4 and shape[-4] not in (1, out_channels):
        return (
            f"loss.pos_weight has shape {shape}, whose channel axis ({shape[-4]}) does not "
            f"broadcast against model.out_channels {out_channels}; write one value per "
            "channel as [[[[w1]]], [[[w2]]], ...] (shape (C, 1, 1, 1))."
        )
    return None


def validate_loss_config(
    name: str, config_cls: type[LossConfig], params: Mapping[str, Any]
) -> LossConfig:
    """``config_cls`` from keyword parameters, with ConfigError instead of ValidationError."""
    from unet_core.registry import format_validation_error

    try:
        return config_cls.model_validate(dict(params))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(f"loss {name!r}", exc)) from None


def check_loss_config(
    name: str,
    config_cls: type[LossConfig],
    config: LossConfig | Mapping[str, Any],
    model_spec: Any,
) -> list[str]:
    """Problems visible from the config alone (loss vs. ``model`` section), one per line.

    ``model_spec`` is the typed model section (a ``ComponentRef``: its validated ``Config``
    is read) or, for direct callers, a ``{name: X, ...}`` mapping.
    """
    if not isinstance(config, LossConfig):
        params = {k: v for k, v in config.items() if k != "name"}
        config = validate_loss_config(name, config_cls, params)
    problems: list[str] = []
    out = model_setting(model_spec, "out_channels", None)
    if isinstance(out, int) and out < config.min_classes:
        problems.append(
            f"loss {name} needs one output channel per class (at least 2, "
            f"background included) but model.out_channels is {out}; set out_channels to "
            "the number of classes, or for a single foreground mask use "
            "BCEWithLogitsLoss/DiceLoss with final_sigmoid: true."
        )
    if isinstance(out, int) and isinstance(config.weight, list) and len(config.weight) != out:
        problems.append(
            f"loss.weight has {len(config.weight)} values but model.out_channels is {out}; "
            "give one weight per output channel."
        )
    pos_problem = None if not isinstance(out, int) else pos_weight_problem(config.pos_weight, out)
    if pos_problem:
        problems.append(pos_problem)
    expected = config.expected_activation()
    actual = model_activation(model_spec)
    if expected is not None and actual != expected:
        problems.append(_activation_problem(name, expected, actual, model_spec))
    return problems


def model_setting(model_spec: Any, key: str, default: Any) -> Any:
    """``key`` of the model section: from a ref's typed ``Config``, or a plain mapping."""
    config = getattr(model_spec, "config", None)
    if config is not None:
        return getattr(config, key, default)
    return model_spec.get(key, default) if isinstance(model_spec, Mapping) else default


def model_activation(model_spec: Any) -> str:
    """What the model applies to its logits: "sigmoid", "softmax" or "none" (reference defaults)."""
    if not model_setting(model_spec, "is_segmentation", True):
        return "none"
    return "sigmoid" if model_setting(model_spec, "final_sigmoid", True) else "softmax"


def _activation_problem(name: str, expected: str, actual: str, spec: Any) -> str:
    fix = {
        "sigmoid": "set model.final_sigmoid: true (and is_segmentation: true)",
        "softmax": "set model.final_sigmoid: false (and is_segmentation: true)",
        "none": "set model.is_segmentation: false",
    }[expected]
    shown = {"sigmoid": "a sigmoid", "softmax": "a softmax", "none": "no activation"}
    return (
        f"loss {name} trains the logits for {shown[expected]} output, but the model applies "
        f"{shown[actual]} at prediction time (final_sigmoid: "
        f"{model_setting(spec, 'final_sigmoid', True)}, "
        f"is_segmentation: {model_setting(spec, 'is_segmentation', True)}), so predictions "
        f"would not match what was trained; {fix}."
    )
