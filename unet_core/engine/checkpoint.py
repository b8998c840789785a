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
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.errors import CheckpointError

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
_SHOW = 3  # how many keys an error message lists per category
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

    A bare state dict is wrapped as ``{"model_state_dict": sd}``; wrapper prefixes are
    stripped from the model keys. Other keys (optimizer state, counters) are returned as saved.
    """
    import torch

    p = Path(path)
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
        reason = str(exc).strip().splitlines()
        detail = next((line for line in reason if "Unsupported global" in line), None)
        detail = detail or (reason[0] if reason else type(exc).__name__)
        raise CheckpointError(
            f"Cannot read checkpoint {str(p)!r}: {type(exc).__name__}: {detail.strip()[:300]}. "
            "Expected a file saved with torch.save holding tensors, numbers and dicts only "
            "(loading uses weights_only=True, so pickled Python objects are refused). "
            "If the file is truncated or from another program, use another checkpoint; if it "
            "holds custom objects, re-save just its state dict with torch.save."
        ) from None
    return normalize_checkpoint(obj, source=str(p))


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
) -> None:
    """Load weights strictly into ``model`` (wrappers allowed) or raise one clear paragraph.

    ``checkpoint_or_path`` is a path, a checkpoint dict or a state dict. ``model_config`` (the
    config's ``model`` section) only makes the message name the config keys that differ.
    """
    if isinstance(checkpoint_or_path, (str, os.PathLike)):
        source = str(checkpoint_or_path)
        ckpt = load_checkpoint(checkpoint_or_path)
    else:
        source = "the checkpoint"
        ckpt = normalize_checkpoint(checkpoint_or_path, source=source)
    target = unwrap_model(model)
    state = ckpt["model_state_dict"]
    expected = target.state_dict()
    state = _squeeze_legacy_2d(state, expected)
    problem = describe_mismatch(expected, state, model_config=model_config, source=source)
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


def describe_mismatch(
    expected: Mapping[str, Any],
    found: Mapping[str, Any],
    *,
    model_config: Mapping[str, Any] | None = None,
    source: str = "the checkpoint",
) -> str | None:
    """One paragraph on why ``found`` does not load into a model with ``expected``, or None."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {_shape(found[k])} vs {_shape(expected[k])}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = [f"The weights in {source} do not match the configured model"]
    name = (model_config or {}).get("name")
    parts[0] += f" ({name})." if name else "."
    if missing:
        parts.append(f"Missing in the checkpoint ({len(missing)}): {_first(missing)}.")
    if unexpected:
        parts.append(f"Not in the model ({len(unexpected)}): {_first(unexpected)}.")
    if shapes:
        parts.append(f"Shape differences ({len(shapes)}, checkpoint vs model): {_first(shapes)}.")
    guesses = guess_config_differences(found, expected, model_config)
    if guesses:
        parts.append("Probably differing: " + "; ".join(guesses) + ".")
        parts.append("Set these in the config's model section to the checkpoint's values.")
    else:
        parts.append(
            "Check that the model section (name, in/out_channels, f_maps, layer_order, "
            "num_levels, upsample) is the one the checkpoint was trained with."
        )
    return " ".join(parts)


def _shape(t: Any) -> str:
    return "[" + ",".join(str(s) for s in t.shape) + "]"


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    return shown + (", ..." if len(items) > _SHOW else "")


# -- what a U-Net state dict says about its config ----------------------------------------------
_ENC = re.compile(r"^encoders\.(\d+)\.")
_DEC = re.compile(r"^decoders\.(\d+)\.")


def infer_unet_config(state: Mapping[str, Any]) -> dict[str, Any]:
    """Config facts readable from a reference-style U-Net state dict (missing ones omitted)."""
    facts: dict[str, Any] = {}
    keys = list(state)
    enc_ids = sorted({int(m.group(1)) for k in keys if (m := _ENC.match(k))})
    if not enc_ids:
        return facts
    facts["num_levels"] = len(enc_ids)
    convs = [k for k in keys if k.endswith("conv.weight") and ".se_module." not in k]
    if convs:
        facts["spatial_dims"] = state[convs[0]].dim() - 2
    if any(".SingleConv1." in k for k in keys):
        family, out_conv, in_convs = "UNet", "SingleConv2.conv.weight", ["SingleConv1.conv.weight"]
    else:
        family, out_conv, in_convs = "ResidualUNet", "conv2.conv.weight", ["conv1.weight"]
        in_convs.append("conv2.conv.weight")
        if any(".se_module." in k for k in keys):
            family = "ResidualUNetSE"
    dims = facts.get("spatial_dims")
    if dims in (2, 3):
        facts["model"] = f"{family}{dims}D"
    f_maps = []
    for i in enc_ids:
        w = state.get(f"encoders.{i}.basic_module.{out_conv}")
        if w is not None:
            f_maps.append(int(w.shape[0]))
    if len(f_maps) == len(enc_ids):
        facts["f_maps"] = f_maps
    for suffix in in_convs:
        w = state.get(f"encoders.0.basic_module.{suffix}")
        if w is not None:
            facts["in_channels"] = int(w.shape[1])
            break
    if "final_conv.weight" in state:
        facts["out_channels"] = int(state["final_conv.weight"].shape[0])
    norms = {"groupnorm": "g", "batchnorm": "b"}
    found = [letter for word, letter in norms.items() if any(f".{word}." in k for k in keys)]
    facts["norm"] = found[0] if len(found) == 1 else ("none" if not found else "+".join(found))
    if any(_DEC.match(k) for k in keys):
        deconv = any("upsampling.upsample.conv_transposed" in k for k in keys)
        facts["upsampling"] = "transposed conv" if deconv else "interpolation"
    return facts


_NORM_WORDS = {"g": "GroupNorm ('g')", "b": "BatchNorm ('b')", "none": "no normalisation"}


def guess_config_differences(
    found: Mapping[str, Any],
    expected: Mapping[str, Any],
    model_config: Mapping[str, Any] | None = None,
) -> list[str]:
    """Human phrases such as 'model.f_maps: checkpoint [32, 64] vs model [64, 128]'."""
    ck, mo = infer_unet_config(found), infer_unet_config(expected)
    cfg = model_config or {}
    out = []
    for field in ("model", "in_channels", "out_channels", "num_levels", "f_maps"):
        if field in ck and field in mo and ck[field] != mo[field]:
            key = "model.name" if field == "model" else f"model.{field}"
            said = f", config says {cfg[key[6:]]!r}" if key[6:] in cfg else ""
            out.append(f"{key}: checkpoint {_fmt(ck[field])} vs model {_fmt(mo[field])}{said}")
    if "f_maps" in ck and "f_maps" in mo and ck["f_maps"] != mo["f_maps"]:
        if len(ck["f_maps"]) == len(mo["f_maps"]) and ck["f_maps"][0] != mo["f_maps"][0]:
            out[-1] += f" (f_maps: {ck['f_maps'][0]} vs {mo['f_maps'][0]})"
    if ck.get("norm") != mo.get("norm") and "norm" in ck and "norm" in mo:
        said = f", config says {cfg['layer_order']!r}" if "layer_order" in cfg else ""
        out.append(
            f"model.layer_order: checkpoint uses {_NORM_WORDS.get(ck['norm'], ck['norm'])} "
            f"vs model {_NORM_WORDS.get(mo['norm'], mo['norm'])}{said}"
        )
    if ck.get("upsampling") != mo.get("upsampling") and "upsampling" in ck and "upsampling" in mo:
        said = f", config says {cfg['upsample']!r}" if "upsample" in cfg else ""
        out.append(
            f"model.upsample: checkpoint decoders use {ck['upsampling']} vs model "
            f"{mo['upsampling']}{said}"
        )
    if _legacy_resnet(found):
        out.append(
            "the checkpoint looks like a pytorch-3dunet model from before 2023-03 "
            "(ExtResNetBlock), whose keys differ from current releases"
        )
    return out


def _legacy_resnet(state: Mapping[str, Any]) -> bool:
    return any(".basic_module.conv1.conv.weight" in k for k in state) and not any(
        ".SingleConv1." in k for k in state
    )


def _fmt(value: Any) -> str:
    return str(value) if not isinstance(value, str) else value


# -- saving -------------------------------------------------------------------------------------
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
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
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
    _fsync_dir(target.parent)


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


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable; not every platform/filesystem allows this, so best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
