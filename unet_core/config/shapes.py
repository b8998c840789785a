"""The one check of (Z, Y, X) valued keys (patch, stride and halo shapes, tiles, chunks,
blocks): the message names how many values the key needs and how many it got."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

AXES = "(Z, Y, X)"


def three_values(value: Any) -> Any:
    """Pydantic before-validator: a list/tuple of exactly 3 entries (None passes)."""
    if value is None:
        return value
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"needs 3 values {AXES}, got the single value {value!r}")
    if len(value) != 3:
        raise ValueError(f"needs 3 values {AXES}, got {len(value)}")
    return value


def zyx(value: list[int] | None, *, minimum: int) -> list[int] | None:
    """3 integers >= ``minimum`` (None passes); the message says which rule failed."""
    three_values(value)
    if value is not None and any(x < minimum for x in value):
        raise ValueError(f"every entry must be >= {minimum}, got {list(value)}")
    return value


#: A (Z, Y, X) tuple of integers whose wrong length is reported as "needs 3 values".
ShapeZYX = Annotated[tuple[int, int, int], BeforeValidator(three_values)]


def positive_sizes(value: list[float]) -> list[float]:
    """3 positive voxel sizes (Z, Y, X), e.g. the sampling of a distance transform."""
    three_values(value)
    if any(v <= 0 for v in value):
        raise ValueError(f"needs 3 positive voxel sizes {AXES}, got {list(value)}")
    return value


#: Voxel sizes (Z, Y, X), all positive.
VoxelSizeZYX = Annotated[list[float], AfterValidator(positive_sizes)]
