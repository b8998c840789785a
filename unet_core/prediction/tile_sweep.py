"""Fast mode's tile edge and batch, measured on the device that predicts, within a memory budget.

Which tile is fastest per voxel depends on the device, the precision and the network (on a
2-core CPU 64^3 is as fast as anything; a GPU wants 128^3 and more), so :func:`plan_tiles`
times one forward of each candidate (edge, batch) with the run's own forward function and
keeps the best voxels/s among those whose memory fits the budget. The measurements are cached
per (model structure, device, precision, candidates) in the user cache folder, so later runs
pay nothing; a different budget is answered from the cached measurements.

Memory of a candidate is estimated from the model, not guessed: one small forward with hooks
sums the bytes of every module's output per input voxel (an upper bound of what inference
keeps alive), scaled by the candidate's voxels and batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

#: Tile edges tried per device kind (each capped by ``max_tile``); batches tried per edge.
CANDIDATE_EDGES = {"cpu": (32, 48, 64, 80, 96), "cuda": (64, 96, 128, 160, 192)}
CANDIDATE_BATCHES = {"cpu": (1, 2), "cuda": (1, 2, 4)}
#: Share of the available memory a plan may use when no budget is given.
DEFAULT_BUDGET_SHARE = 0.5
#: A larger tile running at under this share of the best rate ends the sweep.
SLOWER = 0.85
#: Timed forwards per candidate (the best counts).
REPEATS = 2
#: Version of the cache entries; bump when what a measurement means changes.
CACHE_VERSION = 1

Forward = Callable[[Any], Any]


@dataclass(frozen=True)
class Measured:
    """One candidate: tile (Z,Y,X), batch, seconds per forward, voxels/s, estimated bytes."""

    tile: tuple[int, int, int]
    batch: int
    seconds: float
    voxels_per_s: float
    bytes: int
    #: Not timed because a smaller candidate was already clearly slower than the best.
    slower_than_smaller: bool = False


@dataclass(frozen=True)
class TilePlan:
    """The chosen tile and batch, with what was measured and whether it came from the cache."""

    tile: tuple[int, int, int]
    batch: int
    voxels_per_s: float
    bytes: int
    budget: int
    cached: bool
    cache_file: str
    measured: tuple[Measured, ...]

    def describe(self) -> str:
        z, y, x = self.tile
        return (
            f"tile {z}x{y}x{x}, batch {self.batch}: {self.voxels_per_s / 1e6:.2f} M voxels/s, "
            f"~{self.bytes / 2**20:.0f} MiB of a {self.budget / 2**20:.0f} MiB budget "
            f"({'cached' if self.cached else 'measured now'}: {self.cache_file})"
        )


UNITS = {"": 1, "b": 1, "k": 2**10, "kib": 2**10, "kb": 10**3, "m": 2**20, "mib": 2**20,
         "mb": 10**6, "g": 2**30, "gib": 2**30, "gb": 10**9, "t": 2**40, "tib": 2**40,
         "tb": 10**12}  # fmt: skip


def parse_size(value: int | str) -> int:
    """Bytes of ``4GiB``, ``512M``, ``2GB`` or a plain number of bytes."""
    import re

    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
        unit = match.group(2).lower() if match else ""
        if match is None or unit not in UNITS:
            raise ValueError(
                f"{value!r} is not a memory size; write bytes or a number with a unit "
                "(e.g. 512MiB, 4GiB, 2GB)"
            )
        size = int(float(match.group(1)) * UNITS[unit])
    if size <= 0:
        raise ValueError("a memory budget must be positive")
    return size


def user_cache_dir() -> Path:
    """The folder of tile plans' cache: ``UNET_CORE_CACHE``, else unet-core's per-user cache
    folder (:func:`unet_core.io.user_cache.user_cache_dir`)."""
    from unet_core.io.user_cache import user_cache_dir as shared_cache_dir

    explicit = os.environ.get("UNET_CORE_CACHE")
    return Path(explicit) if explicit else shared_cache_dir()


def candidates(
    device_type: str, max_tile: Sequence[int] | None = None, *, exact: bool = False
) -> list[tuple[tuple[int, int, int], int]]:
    """(tile, batch) pairs to time: the device's edges capped by ``max_tile``, no duplicates;
    ``exact``: only ``max_tile`` itself (the batch is all there is to choose)."""
    edges: tuple[int, ...] = CANDIDATE_EDGES.get(device_type, CANDIDATE_EDGES["cpu"])
    if exact and max_tile is not None:
        edges = (max(int(m) for m in max_tile),)
    batches = CANDIDATE_BATCHES.get(device_type, (1,))
    out: list[tuple[tuple[int, int, int], int]] = []
    for edge in edges:
        z, y, x = (min(edge, int(m)) for m in (max_tile or (edge,) * 3))
        for batch in batches:
            if ((z, y, x), batch) not in out:
                out.append(((z, y, x), batch))
    return out


def model_key(model: torch.nn.Module) -> str:
    """The model's structure (class, modules, parameter shapes), not its weights."""
    parts = [type(model).__qualname__, repr(model)]
    parts += [f"{n}:{tuple(p.shape)}" for n, p in model.named_parameters()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def device_key(device: torch.device) -> str:
    """What the speed depends on besides the model: the processor and the thread count."""
    import torch

    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    name = "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return f"{device.type}:{name}:threads={torch.get_num_threads()}"


def default_budget(device: torch.device) -> int:
    """Half the memory available now: free GPU memory, or MemAvailable of the machine."""
    import torch

    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * DEFAULT_BUDGET_SHARE)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) * 1024 * DEFAULT_BUDGET_SHARE)
    except OSError:
        pass
    return 4 * 2**30


def bytes_per_voxel(model: torch.nn.Module, in_channels: int, device: torch.device) -> float:
    """Bytes of all module outputs of one forward per input voxel (float32, an upper bound)."""
    import torch

    edge = 16
    total = [0]

    def count(_module: Any, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            total[0] += output.numel() * 4

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, in_channels, edge, edge, edge, device=device))
    finally:
        for h in handles:
            h.remove()
    return max(total[0], 1) / float(edge**3)


def measure(
    forward: Forward,
    in_channels: int,
    tile: tuple[int, int, int],
    batch: int,
    device: torch.device,
) -> float:
    """Seconds of one forward of a (batch, C, *tile) input: the best of :data:`REPEATS`
    after one warm-up forward (other processes on the machine only ever add time)."""
    import torch

    x = torch.randn(batch, in_channels, *tile)
    forward(x)
    best = float("inf")
    for _ in range(REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        forward(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def plan_tiles(
    forward: Forward,
    model: torch.nn.Module,
    device: torch.device,
    *,
    precision: str,
    in_channels: int = 1,
    max_tile: Sequence[int] | None = None,
    exact: bool = False,
    budget: int | None = None,
    cache_dir: Path | None = None,
) -> TilePlan:
    """The fastest (tile, batch) within ``budget`` bytes, measured once and cached; with
    ``exact`` the tile is ``max_tile`` and only the batch is chosen."""
    budget = int(budget) if budget else default_budget(device)
    options = candidates(device.type, max_tile, exact=exact)
    key_fields = {
        "version": CACHE_VERSION,
        "model": model_key(model),
        "device": device_key(device),
        "precision": precision,
        "in_channels": in_channels,
        "candidates": [[list(t), b] for t, b in options],
    }
    key = hashlib.sha256(json.dumps(key_fields, sort_keys=True).encode()).hexdigest()[:20]
    path = (cache_dir or user_cache_dir() / "tile-plans") / f"{key}.json"
    known = _read_cache(path, key_fields) or []
    missing = [
        m for m in known if m.seconds <= 0 and m.bytes <= budget and not m.slower_than_smaller
    ]
    cached = bool(known) and not missing
    if not cached:
        known = _sweep(forward, model, device, in_channels, options, budget, known)
        _write_cache(path, key_fields, known)
    measured = known
    fitting = [m for m in measured if m.bytes <= budget and m.seconds > 0]
    if not fitting:
        smallest = min(measured, key=lambda m: m.bytes)
        raise ConfigError(
            f"predictor.memory_budget: {budget / 2**20:.0f} MiB is less than the smallest "
            f"tile fast mode tries needs ({smallest.tile}, batch 1: ~"
            f"{smallest.bytes / 2**20:.0f} MiB). Raise the budget (--memory-budget), or set "
            "predictor.tile_shape to a smaller tile yourself."
        )
    best = max(fitting, key=lambda m: m.voxels_per_s)
    return TilePlan(
        best.tile, best.batch, best.voxels_per_s, best.bytes, budget, cached, str(path),
        tuple(measured),
    )  # fmt: skip


def _sweep(
    forward: Forward,
    model: torch.nn.Module,
    device: torch.device,
    in_channels: int,
    options: list[tuple[tuple[int, int, int], int]],
    budget: int,
    known: list[Measured],
) -> list[Measured]:
    """Time the candidates that fit the budget (smallest first) and are not timed yet;
    estimate the memory of all. Larger tiles stop being tried once they are clearly slower."""
    per_voxel = bytes_per_voxel(model, in_channels, device)
    done = {(m.tile, m.batch): m for m in known if m.seconds > 0}
    print(f"Measuring fast-mode tiles on {device} (once; cached)...", file=sys.stderr, flush=True)
    out: list[Measured] = []
    best = 0.0
    for tile, batch in options:
        voxels = tile[0] * tile[1] * tile[2] * batch
        need = int(per_voxel * voxels)
        if (tile, batch) in done:
            out.append(done[(tile, batch)])
            best = max(best, done[(tile, batch)].voxels_per_s)
            continue
        if need > budget or (best > 0 and tile != _last_tile(out) and _beyond_peak(out, best)):
            out.append(Measured(tile, batch, 0.0, 0.0, need, need <= budget))
            continue
        seconds = measure(forward, in_channels, tile, batch, device)
        rate = voxels / seconds if seconds > 0 else 0.0
        best = max(best, rate)
        out.append(Measured(tile, batch, seconds, rate, need))
    return out


def _last_tile(timed: list[Measured]) -> tuple[int, int, int] | None:
    last = [m for m in timed if m.seconds > 0]
    return last[-1].tile if last else None


def _beyond_peak(timed: list[Measured], best: float) -> bool:
    """The last tile timed ran (at its best batch) under :data:`SLOWER` of the best: stop."""
    last = [m for m in timed if m.seconds > 0]
    if not last:
        return False
    same_tile = [m.voxels_per_s for m in last if m.tile == last[-1].tile]
    return max(same_tile) < SLOWER * best


def _read_cache(path: Path, key_fields: dict[str, Any]) -> list[Measured] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key_fields:
        return None
    try:
        return [
            Measured(tuple(m["tile"]), int(m["batch"]), float(m["seconds"]),  # type: ignore[arg-type]
                     float(m["voxels_per_s"]), int(m["bytes"]),
                     bool(m.get("slower_than_smaller", False)))
            for m in data["measured"]
        ]  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def _write_cache(path: Path, key_fields: dict[str, Any], measured: list[Measured]) -> None:
    """Atomically; a cache that cannot be written only costs the next run a sweep."""
    from unet_core.io.atomic import write_text_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": key_fields, "measured": [asdict(m) for m in measured]}
        write_text_atomic(path, json.dumps(record, indent=1) + "\n")
    except OSError:
        pass
