"""Training state -> checkpoint-ready CPU copies, RNG states, and a background writer.

A checkpoint must not stall training: the state is copied to the CPU in the training thread
(cheap: a memory copy) and written by a worker thread through the atomic
``checkpoint.save_checkpoint``. Only one write is in flight; the next submit (and the end of
training) waits for it, and a failed write is raised there as a CheckpointError.
Everything stored is tensors, numbers, strings, lists and dicts, so ``weights_only=True`` loads it.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from unet_core.engine.checkpoint import save_checkpoint
from unet_core.errors import CheckpointError, UserError

if TYPE_CHECKING:
    import torch


def cpu_copy(obj: Any) -> Any:
    """A deep copy with every tensor detached and copied to the CPU (never shared storage)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_copy(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_copy(v) for v in obj)
    return obj


# -- RNG states ---------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """python, numpy, torch (and CUDA) generator states in weights_only-safe types."""
    import torch

    version, internal, gauss = random.getstate()
    _, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": version,
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss,
        },
        "numpy": {
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (parts that are missing are left alone)."""
    import torch

    py = state.get("python")
    if py is not None:
        internal = tuple(int(v) for v in py["state"].tolist())
        random.setstate((int(py["version"]), internal, py["gauss"]))
    npy = state.get("numpy")
    if npy is not None:
        key = npy["key"].numpy().astype(np.uint32)
        np.random.set_state(
            ("MT19937", key, int(npy["pos"]), int(npy["has_gauss"]), float(npy["cached_gaussian"]))
        )
    if state.get("torch") is not None:
        torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def generator_state(gen: torch.Generator | None) -> torch.Tensor | None:
    """A CPU torch.Generator's state (None when there is none)."""
    return None if gen is None else gen.get_state()


# -- background writing -------------------------------------------------------------------------
class CheckpointWriter:
    """Writes checkpoint dicts to one or more paths in a worker thread, one job at a time."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done: list[tuple[Path, bool]] = []
        self._lock = threading.Lock()

    def submit(self, state: dict[str, Any], targets: list[tuple[Path, bool]]) -> None:
        """Write ``state`` to each (path, is_best) in order; waits for the previous job first."""
        self.wait()
        self._thread = threading.Thread(
            target=self._run, args=(state, targets), name="unet-checkpoint-writer", daemon=True
        )
        self._thread.start()

    def _run(self, state: dict[str, Any], targets: list[tuple[Path, bool]]) -> None:
        try:
            for path, is_best in targets:
                save_checkpoint(state, path)
                with self._lock:
                    self._done.append((path, is_best))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the training thread
            self._error = exc

    def poll(self) -> list[tuple[Path, bool]]:
        """Writes completed since the last poll (non-blocking)."""
        with self._lock:
            done, self._done = self._done, []
        return done

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self) -> list[tuple[Path, bool]]:
        """Block until the job in flight ends; raise its error; return completed writes."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            if isinstance(error, UserError):
                raise error
            raise CheckpointError(
                f"Writing a checkpoint failed: {type(error).__name__}: {error}. The previous "
                "checkpoint file is unchanged; check the disk and trainer.checkpoint_dir."
            ) from error
        return self.poll()
