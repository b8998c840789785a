"""Loader keys of older pytorch-3dunet configs that every dataset accepts, with no effect."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from unet_core.interfaces import ComponentConfig


class LegacyLoaderKeys(ComponentConfig):
    """``mirror_padding`` and ``label_dtype`` still appear in the reference's shipped configs."""

    mirror_padding: Any = Field(
        None,
        description="Accepted for compatibility with older configs; no effect (the test-time "
        "context is slice_builder.halo_shape).",
    )
    label_dtype: Any = Field(
        None,
        description="Accepted for compatibility with older configs; no effect (the label dtype "
        "is set by ToTensor's dtype).",
    )
