"""Why a checkpoint does not fit a model: the first differing keys, and (from the model plugin)
the config fields behind them.

Split from :mod:`unet_core.engine.checkpoint` so loading and saving stay short; only the
mismatch path (an error being raised anyway) needs this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

_SHOW = 3  # how many keys an error message lists per category


def describe_mismatch(
    expected: Mapping[str, Any],
    found: Mapping[str, Any],
    *,
    model_config: Mapping[str, Any] | None = None,
    source: str = "the checkpoint",
    explain: Callable[..., list[str]] | None = None,
) -> str | None:
    """One paragraph on why ``found`` does not load into a model with ``expected``, or None.

    ``explain`` is the model's own ``explain_mismatch(found, expected, model_config)``: only the
    model plugin knows which config keys its state-dict keys and shapes come from.
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {_shape(found[k])} vs {_shape(expected[k])}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"The weights in {source} do not match the configured model"]
    name = (model_config or {}).get("name")
    parts[0] += f" ({name})." if name else "."
    if missing:
        parts.append(f"Missing in the checkpoint ({len(missing)}): {_first(missing)}.")
    if unexpected:
        parts.append(f"Not in the model ({len(unexpected)}): {_first(unexpected)}.")
    if shapes:
        parts.append(f"Shape differences ({len(shapes)}, checkpoint vs model): {_first(shapes)}.")
    guesses = explain(found, expected, model_config or {}) if explain is not None else []
    if guesses:
        parts.append("Probably differing: " + "; ".join(guesses) + ".")
        parts.append("Set these in the config's model section to the checkpoint's values.")
    else:
        parts.append(
            "Check that the model section (name, in/out_channels, f_maps, layer_order, "
            "num_levels, upsample) is the one the checkpoint was trained with."
        )
    return " ".join(parts)


def _shape(t: Any) -> str:
    return "[" + ",".join(str(s) for s in t.shape) + "]"


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (", ..." if len(items) > _SHOW else "")
