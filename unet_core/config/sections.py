"""Build config sections in Python, for scripts that drive the engines without a YAML file.

The result is the same plain dict a reference-style YAML file gives, so it goes through the
same validation (``config_from_dict``) and reads the same in a saved ``config.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from unet_core.config.schema import DEFAULT_NAMES

#: The raw pipeline of a prediction or validation phase: standardize, add the channel axis.
PLAIN_RAW: list[dict[str, Any]] = [
    {"name": "Standardize"},
    {"name": "ToTensor", "expand_dims": True},
]


def phase_section(
    file_paths: Sequence[str | os.PathLike[str]],
    patch_shape: Sequence[int],
    stride_shape: Sequence[int] | None = None,
    *,
    raw: Sequence[dict[str, Any]] = PLAIN_RAW,
    label: Sequence[dict[str, Any]] | None = None,
    slice_builder: str = DEFAULT_NAMES["slice_builder"],
    **builder_params: Any,
) -> dict[str, Any]:
    """A ``loaders.<phase>`` section: files, a slice builder and the transform pipelines.

    ``stride_shape`` defaults to the patch (tiles without overlap); extra keyword arguments
    (``halo_shape``, ``threshold``, ``skip_shape_check``, ...) go to the slice builder.
    """
    builder: dict[str, Any] = {
        "name": slice_builder,
        "patch_shape": list(patch_shape),
        "stride_shape": list(stride_shape if stride_shape is not None else patch_shape),
        **builder_params,
    }
    transformer: dict[str, Any] = {"raw": [dict(t) for t in raw]}
    if label is not None:
        transformer["label"] = [dict(t) for t in label]
    return {
        "file_paths": [os.fspath(p) for p in file_paths],
        "slice_builder": builder,
        "transformer": transformer,
    }
