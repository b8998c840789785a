"""``unet predict --plan``: the tiles fast mode would use here, and why, without predicting."""

from __future__ import annotations

from typing import Any

from unet_core.config.schema import ExperimentConfig
from unet_core.errors import ConfigError


def show_plan(cfg: ExperimentConfig, *, device: str | None = None) -> dict[str, Any]:
    """Build the model and predictor, measure (or read from the cache) fast mode's tile plan
    and print it with every candidate's voxels/s; returns the plan as a dict."""
    from rich.console import Console
    from rich.table import Table

    from unet_core.engine.data import input_files
    from unet_core.engine.device import resolve_device
    from unet_core.prediction.building import (
        _volume_shape,
        build_model,
        build_predictor,
        check_predict_config,
    )

    check_predict_config(cfg)
    if hasattr(cfg.predictor.config, "fast") and not cfg.predictor.config.fast:
        fast = cfg.predictor.with_params(fast=True)
        note = "the config predicts in reference mode; with predictor.fast: true it would use:"
        cfg = cfg.model_copy(update={"predictor": fast})
    else:
        note = "fast mode will use:"
    torch_device = resolve_device(device or cfg.device)
    predictor = build_predictor(cfg, build_model(cfg), torch_device)
    planner = getattr(predictor, "tile_plan", None)
    if not callable(planner):
        raise ConfigError(
            f"unet predict --plan: predictor {cfg.predictor.name} does not choose its tiles "
            "(no tile_plan); use StandardPredictor or LazyPredictor with fast: true."
        )
    first = input_files(cfg, "test")[0]
    volume = _volume_shape(cfg, first)
    plan = planner(volume)
    console = Console()
    console.print(f"{note} (for {first}, (Z,Y,X) {tuple(volume)})\n{plan.describe()}")
    table = Table(title=f"measured on {torch_device}")
    for column in ("tile", "batch", "seconds", "M voxels/s", "memory MiB", ""):
        table.add_column(column, justify="right")
    for m in plan.measured:
        mark = "chosen" if (m.tile, m.batch) == (plan.tile, plan.batch) else ""
        if m.seconds <= 0:
            mark = "over budget" if m.bytes > plan.budget else "not timed (slower)"
        table.add_row(
            "x".join(map(str, m.tile)),
            str(m.batch),
            f"{m.seconds:.3f}" if m.seconds > 0 else "-",
            f"{m.voxels_per_s / 1e6:.2f}" if m.seconds > 0 else "-",
            f"{m.bytes / 2**20:.0f}",
            mark,
        )
    console.print(table)
    tiles_for = getattr(predictor, "slice_builder_overrides", None)
    compile_note = None
    if callable(tiles_for):
        tiles_for(volume)  # the tiles of this volume, and what compile: auto makes of them
        compile_note = getattr(predictor, "compile_note", None)
        if compile_note:
            console.print(compile_note)
    return {
        "compile": compile_note,
        "tile": list(plan.tile),
        "batch": plan.batch,
        "voxels_per_s": plan.voxels_per_s,
        "budget": plan.budget,
        "cached": plan.cached,
    }
