"""How StandardPredictor picks its tiles: the slice builder's patches (the reference), a fixed
``tile_shape``, or fast mode's measured plan (per volume, cached per model and device).

A mixin so that the predictor module keeps to running and writing; it reads the predictor's
``config``, ``settings``, ``forward``, ``model``, ``device`` and ``experiment``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

from unet_core.prediction_api import (
    TilePlan,
    compile_pays,
    compile_threshold_seconds,
    patch_grid,
    plan_tiles,
    redundancy,
    stride_for_overlap,
)
from unet_plugins.predictors.input_statistics import patch_statistics_limit
from unet_plugins.predictors.settings import fast_max_tile, fit_tiles


class TileChoice:
    """Tile/stride/halo of each volume when they are chosen by the predictor."""

    config: Any
    settings: Any
    forward: Any
    model: Any
    device: Any
    experiment: Any
    _plan: TilePlan | None
    #: What ``compile: auto`` decided for the last volume, and why (``unet predict --plan``).
    compile_note: str | None = None
    _plans: dict[tuple[int, int, int] | None, TilePlan]

    def _plan_precision(self) -> str:
        """The precision part of the tile plan's cache key (a backend sets its own)."""
        mode = str(self.forward.precision.mode)
        return f"backend-{self.config.backend.name}" if mode == "backend" else mode

    def tile_plan(self, volume: Sequence[int] | None = None) -> TilePlan:
        """Fast mode's tile and batch for this model on this device (measured once, cached),
        no larger than ``volume`` (Z,Y,X). Where the input is normalised per patch, the tile
        is the test patch itself (see input_statistics) and only the batch is measured."""
        limit = patch_statistics_limit(self.experiment)
        exact = limit is not None
        if volume is not None:
            shape = [int(v) for v in volume[-3:]]
            limit = tuple(min(a, b) for a, b in zip(limit or shape, shape))  # type: ignore[assignment]
        if limit not in self._plans:
            self._plans[limit] = plan_tiles(
                self.forward,
                self.model,
                self.device,
                precision=self._plan_precision(),
                in_channels=int(getattr(self.model, "in_channels", 1)),
                max_tile=limit,
                exact=exact,
                budget=self.config.memory_budget,  # type: ignore[arg-type]
            )
        self._plan = self._plans[limit]
        return self._plan

    @property
    def _planned(self) -> bool:
        """Whether tiles and batch come from :meth:`tile_plan` (fast, no tile_shape)."""
        return self.config.fast and self.config.tile_shape is None

    @property
    def retiles(self) -> bool:
        """Whether tiles are chosen here rather than by loaders.test.slice_builder."""
        return self.settings.tile_shape is not None

    def slice_builder_overrides(self, volume_shape: Sequence[int]) -> dict[str, Any] | None:
        """Patch/stride/halo for this volume when tiles are chosen here (``fast``/tile_shape)."""
        s = self.settings
        if s.tile_shape is None:
            return None
        volume = tuple(int(v) for v in volume_shape)
        self._plan = None
        if self._planned and volume[-3] == 1:  # 2D data: flat tiles
            tile, stride = fit_tiles(
                volume, fast_max_tile(self.device.type, volume), s.tile_overlap
            )
        elif self._planned and patch_statistics_limit(self.experiment) is None:
            # the fewest tiles of the measured size, shrunk evenly
            tile, stride = fit_tiles(volume, self.tile_plan(volume).tile, s.tile_overlap)
        elif self._planned:  # per-patch statistics: the test patch, as the model saw it
            tile = self.tile_plan(volume).tile
            stride = stride_for_overlap(tile, s.tile_overlap)  # type: ignore[assignment]
        else:
            z, y, x = (min(t, v) for t, v in zip(s.tile_shape, volume[-3:]))
            tile = (z, y, x)
            stride = stride_for_overlap(tile, s.tile_overlap)  # type: ignore[assignment]
        halo = tuple(0 if t == 1 else h for t, h in zip(tile, s.tile_halo))
        if self._planned:
            self._compile_if_it_pays(volume, tile, stride, halo)
        return {
            "patch_shape": tuple(tile),
            "stride_shape": tuple(stride),
            "halo_shape": tuple(halo),
            "skip_shape_check": True,
        }

    def _compile_if_it_pays(
        self,
        volume: Sequence[int],
        tile: Sequence[int],
        stride: Sequence[int],
        halo: Sequence[int],
    ) -> None:
        """``compile: auto``: compile when this volume's eager forwards, estimated from the
        measured plan, outlast what compiling costs (unet_core.prediction.inference)."""
        if self.config.compile != "auto" or self._plan is None or self.forward.compiled:
            return
        spatial = tuple(volume[-3:])
        indices = patch_grid(spatial, tuple(tile), tuple(stride))
        tiles = len(indices)
        voxels = redundancy(indices, spatial, tuple(halo)) * math.prod(spatial)  # computed
        eager = voxels * len(self.forward.augments) / max(self._plan.voxels_per_s, 1e-9)
        pays = compile_pays(self.device.type, eager)
        self.compile_note = (
            f"compile: auto: {'compiling' if pays else 'not compiling'} the model "
            f"(~{eager:.1f} s of eager forwards for {tiles} tiles of this volume on "
            f"{self.device.type}; it compiles on CUDA above ~{compile_threshold_seconds():.0f} s)"
        )
        if pays:
            print(self.compile_note, file=sys.stderr, flush=True)
            self.forward.enable_compile()
