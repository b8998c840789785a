"""Whether the test transforms normalise each patch by its own statistics, and what that
means for fast mode's tiles.

``Standardize`` without ``mean``/``std`` and without ``global_normalization`` subtracts each
patch's own mean: the model then learnt inputs normalised over a training-sized patch. A fast
tile much larger than that (one tile over a small volume) is normalised over more background
or more foreground, shifting the input distribution: on a 31x61x57 nuclei volume one such tile
scored Dice 0.708 against 0.728 in reference mode (issue #17). Statistics computed once per
volume instead are just as far from the per-patch ones, so the tiles are kept to the test
patch (loaders.test.slice_builder.patch_shape, normally the training patch) instead; measured
in docs/performance.md.
"""

from __future__ import annotations

from typing import Any

#: Transforms that change no value, or no value depending on the patch.
NEUTRAL = {"ToTensor", "Identity"}


def depends_on_patch(transform: Any, global_stats: bool) -> bool:
    """Whether one raw transform's output depends on the patch it is applied to."""
    name = getattr(transform, "name", None) or dict(transform).get("name")
    config = getattr(transform, "config", None)
    if name in NEUTRAL:
        return False
    if name == "Standardize":
        return getattr(config, "mean", None) is None and not global_stats
    if name == "PercentileNormalizer":
        explicit = {"pmin", "pmax"} & set(getattr(config, "model_fields_set", set()))
        return bool(explicit) or not global_stats
    if name == "Normalize":
        fixed = getattr(config, "min_value", None) is not None
        return not (fixed and getattr(config, "max_value", None) is not None) and not global_stats
    return True  # unknown: assume it may, which only keeps tiles at the patch size


def patch_statistics_limit(experiment: Any) -> tuple[int, int, int] | None:
    """The largest tile (Z,Y,X) that keeps the model's input distribution, or None if the
    raw transforms do not depend on the patch (any tile size then gives the same input)."""
    loaders = getattr(experiment, "loaders", None)
    test = getattr(loaders, "test", None)
    if test is None:
        return None
    global_stats = bool(loaders.dataset_setting("global_normalization", False))
    raw = list(getattr(test.transformer, "raw", []) or [])
    if not any(depends_on_patch(t, global_stats) for t in raw):
        return None
    patch = test.patch_shape
    if patch is None or len(patch) != 3:
        return None
    z, y, x = (int(p) for p in patch)
    return (z, y, x)
