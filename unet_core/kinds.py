"""The component kinds and their entry-point groups (import-free, for fast start-up)."""

from __future__ import annotations

#: Every kind and the entry-point group it is read from.
KINDS: dict[str, str] = {
    "models": "unet.models",
    "losses": "unet.losses",
    "metrics": "unet.metrics",
    "datasets": "unet.datasets",
    "transforms": "unet.transforms",
    "slice_builders": "unet.slice_builders",
    "predictors": "unet.predictors",
    "postprocessors": "unet.postprocessors",
    "optimizers": "unet.optimizers",
    "lr_schedulers": "unet.lr_schedulers",
    "formats": "unet.formats",
    "backends": "unet.backends",
}
HOOKS_GROUP = "unet.hooks"

_SINGULAR = {
    "losses": "loss",
    "slice_builders": "slice builder",
    "lr_schedulers": "LR scheduler",
    "backends": "inference backend",
}


def singular(kind: str) -> str:
    """'losses' -> 'loss', for messages."""
    return _SINGULAR.get(kind, kind[:-1] if kind.endswith("s") else kind)
