"""Checkpoint files: safe loading, atomic saving, and readable mismatch reports.

The format is the reference's (pytorch-3dunet): a ``torch.save``d dict with ``num_epochs``,
``num_iterations``, ``model_state_dict``, ``best_eval_score`` and ``optimizer_state_dict``;
we may add keys, never rename them. Loading uses ``weights_only=True`` (no arbitrary
unpickling) and accepts what users actually have: the reference's dict, a bare state dict,
and keys prefixed by ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (``torch.compile``).
Saving goes through a temp file in the same directory, fsync and ``os.replace``, so a crash
or a full disk never leaves a truncated checkpoint in place of a good one.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.engine.checkpoint_diagnosis import _SHOW, describe_mismatch  # noqa: F401
from unet_core.errors import CheckpointError
from unet_core.io.atomic import fsync_path

if TYPE_CHECKING:
    import torch

StrPath = str | os.PathLike[str]

#: Prefixes added by wrappers around a model: DataParallel/DDP and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
#: Keys of the reference's checkpoint dict.
REFERENCE_KEYS = (
    "num_epochs",
    "num_iterations",
    "model_state_dict",
    "best_eval_score",
    "optimizer_state_dict",
)
_WRITE_CHUNK = 1 << 20


# -- loading ------------------------------------------------------------------------------------
def _numpy_safe_globals() -> list[Any]:
    """Numpy scalar types the reference leaves in checkpoints (e.g. a np.float64 best score)."""
    import numpy as np

    core = getattr(np, "_core", None) or np.core
    dtypes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdg"]
    return [core.multiarray.scalar, core.multiarray._reconstruct, np.ndarray, np.dtype, *dtypes]


def load_checkpoint(path: StrPath) -> dict[str, Any]:
    """Read a checkpoint on the CPU; always returns a dict with ``model_state_dict``.

    A bioimage.io model package with a unet-core/pytorch-3dunet state dict reads as one too.

    A bare state dict is wrapped as ``{"model_state_dict": sd}``; wrapper prefixes are
    stripped from the model keys. Other keys (optimizer state, counters) are returned as saved.
    """
    import torch

    from unet_core.io.model_package import is_model_package

    p = Path(path)
    if is_model_package(p):  # a bioimage.io package: its state dict, e.g. as pre_trained
        from unet_core.io.package_weights import package_checkpoint

        return normalize_checkpoint(package_checkpoint(p), source=str(p))
    if not p.is_file():
        where = "is a directory" if p.is_dir() else "does not exist"
        raise CheckpointError(
            f"Checkpoint {str(p)!r} {where}; expected a file written by unet-core or "
            "pytorch-3dunet (e.g. best_checkpoint.pytorch). Check the path (model_path or "
            "trainer.resume / trainer.pre_trained in the config)."
        )
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every failure here is a bad file, told once
        raise CheckpointError(
            f"Cannot read checkpoint {str(p)!r}: {_load_failure(exc, p)}. "
            "Expected a file saved with torch.save holding tensors, numbers and dicts only "
            "(loading uses weights_only=True, so pickled Python objects are refused). "
            "If the file is truncated or from another program, use another checkpoint; if it "
            "holds custom objects, re-save just its state dict with torch.save."
        ) from None
    return normalize_checkpoint(obj, source=str(p))


def _load_failure(exc: Exception, path: Path) -> str:
    """What torch.load's failure says about the file, in a few words (its own messages run to
    paragraphs, and advise weights_only=False, which unet-core never does)."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    found = next((line for line in lines if "Unsupported global" in line), None)
    if found:
        return f"it holds a pickled Python object ({found[:200]})"
    if "central directory" in text or "zip archive" in text or isinstance(exc, (EOFError, OSError)):
        return f"the file is truncated or corrupted ({type(exc).__name__})"
    if "WeightsUnpickler error" in text:
        lines = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines() or ["?"]
    detail = f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__
    return f"it is not a file saved with torch.save ({detail})"


def normalize_checkpoint(obj: Any, *, source: str = "checkpoint") -> dict[str, Any]:
    """A loaded object as ``{"model_state_dict": ..., ...}`` with wrapper prefixes stripped."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{source} holds a {type(obj).__name__}, not a dict; expected a checkpoint dict "
            "with 'model_state_dict' or a model state dict (parameter name -> tensor). "
            "Re-save it with torch.save(model.state_dict(), path)."
        )
    if "model_state_dict" in obj:
        out = dict(obj)
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        out = {k: v for k, v in obj.items() if k != "state_dict"}
        out["model_state_dict"] = obj["state_dict"]
    elif _is_state_dict(obj):
        out = {"model_state_dict": obj}
    else:
        keys = ", ".join(repr(k) for k in list(obj)[:_SHOW])
        raise CheckpointError(
            f"{source} is a dict without 'model_state_dict' (its keys start with {keys}) and "
            "is not a state dict of tensors either; expected a checkpoint written by unet-core "
            "or pytorch-3dunet, or torch.save(model.state_dict(), path)."
        )
    out["model_state_dict"] = strip_wrapper_prefixes(out["model_state_dict"])
    return out


def _is_state_dict(obj: Mapping[Any, Any]) -> bool:
    import torch

    return bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Remove ``module.`` / ``_orig_mod.`` prefixes shared by every key (in any nesting)."""
    out = dict(state)
    while out:
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                break
        else:
            return out
    return out


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The bare network inside DataParallel/DDP and ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None and type(model).__name__ in ("DataParallel", "DistributedDataParallel"):
            inner = getattr(model, "module", None)
        if inner is None:
            return model
        model = inner


def state_dict_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as the bare network names it (what the reference saves)."""
    return dict(unwrap_model(model).state_dict())


# -- applying weights ---------------------------------------------------------------------------
def load_model_weights(
    model: torch.nn.Module,
    checkpoint_or_path: StrPath | Mapping[str, Any],
    *,
    model_config: Mapping[str, Any] | None = None,
    source: str | None = None,
) -> None:
    """Load weights strictly into ``model`` (wrappers allowed) or raise one clear paragraph.

    ``checkpoint_or_path`` is a path, a checkpoint dict or a state dict (``source``: the file
    it was read from, for messages). ``model_config`` (the config's ``model`` section) only
    makes the message name the config keys that differ.
    """
    if isinstance(checkpoint_or_path, (str, os.PathLike)):
        source = str(checkpoint_or_path)
        ckpt = load_checkpoint(checkpoint_or_path)
    else:
        source = source or "the checkpoint"
        ckpt = normalize_checkpoint(checkpoint_or_path, source=source)
    target = unwrap_model(model)
    state, problem = fit_state(target, ckpt["model_state_dict"], model_config, source)
    if problem is not None:
        raise CheckpointError(problem)
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype oddities the key/shape check cannot foresee
        first = str(exc).strip().splitlines()
        raise CheckpointError(
            f"The weights in {source} do not fit the model {type(target).__name__}: "
            f"{' '.join(first[:3])[:400]}."
        ) from None


def fit_state(
    model: torch.nn.Module,
    state: Mapping[str, Any],
    model_config: Mapping[str, Any] | None = None,
    source: str = "the checkpoint",
) -> tuple[dict[str, Any], str | None]:
    """(``state`` as ``model`` would load it, the paragraph on why it does not fit or None)."""
    from unet_core.contracts import declared

    target = unwrap_model(model)
    expected = target.state_dict()
    fitted = _squeeze_legacy_2d(dict(state), expected)
    explain = declared("models", target, "explain_mismatch")
    problem = describe_mismatch(
        expected, fitted, model_config=model_config, source=source, explain=explain
    )
    return fitted, problem


def _squeeze_legacy_2d(state: dict[str, Any], expected: Mapping[str, Any]) -> dict[str, Any]:
    """Old reference UNet2D checkpoints stored Conv3d weights [o,i,1,k,k]; squeeze that z."""
    out = dict(state)
    for key, value in state.items():
        want = expected.get(key)
        if (
            want is not None
            and value.dim() == want.dim() + 1 == 5
            and value.shape[2] == 1
            and value.shape[:2] + value.shape[3:] == want.shape
        ):
            out[key] = value.squeeze(2)
    return out


class _FdWriter:
    """A minimal buffered writer over a raw fd, so every byte goes through ``os.write``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buf = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> int:
        size = len(memoryview(data).cast("B"))
        if size >= _WRITE_CHUNK:  # big tensors go straight to the file, uncopied
            self.flush()
            self._write_all(memoryview(data).cast("B"))
        else:
            self._buf += data
            if len(self._buf) >= _WRITE_CHUNK:
                self.flush()
        return size

    def flush(self) -> None:
        data, self._buf = bytes(self._buf), bytearray()
        self._write_all(memoryview(data))

    def _write_all(self, view: memoryview) -> None:
        while view:
            written = os.write(self.fd, view)
            view = view[written:]


def save_checkpoint(state: Mapping[str, Any], path: StrPath) -> None:
    """Write ``state`` with torch.save atomically: the old file survives any failure."""
    import torch

    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # the pid in the name: a temporary is only ever removed by its own process or by the
        # next run that holds the folder's lock (training/run_folder.py)
        fd, tmp = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp"
        )
    except OSError as exc:
        raise _save_error(target, exc) from None
    try:
        try:
            writer = _FdWriter(fd)
            torch.save(dict(state), writer)  # type: ignore[arg-type]
            writer.flush()
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, OSError):
            raise _save_error(target, exc) from None
        raise
    fsync_path(target.parent, directory=True)


def _save_error(target: Path, exc: OSError) -> CheckpointError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    why = "the disk is full" if full else (exc.strerror or str(exc))
    fix = (
        "free space or point trainer.checkpoint_dir to a disk with room"
        if full
        else "check that the directory exists and is writable"
    )
    return CheckpointError(
        f"Could not write checkpoint {str(target)!r}: {why} (errno {exc.errno}). "
        f"Any previous file at that path is unchanged; {fix}."
    )


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def stored_config(checkpoint: str, way_out: str) -> dict[str, Any]:
    """The training config saved in ``checkpoint`` by ``unet train``, or one paragraph ending
    with ``way_out`` (what the command needs instead)."""
    saved = load_checkpoint(checkpoint).get("config")
    if not isinstance(saved, Mapping) or not isinstance(saved.get("model"), Mapping):
        raise CheckpointError(
            f"{checkpoint} does not contain the config it was trained with (it was not written "
            "by `unet train`, e.g. it comes from pytorch-3dunet or is a bare state dict). "
            f"{way_out}"
        )
    return dict(saved)
