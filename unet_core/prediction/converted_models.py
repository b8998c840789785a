"""Models converted for an inference backend, cached on disk across runs.

A conversion (ONNX export with its parity check, an OpenVINO IR) takes seconds; predicting
with the same weights again should not pay it. An entry is a folder named by a digest of its
key (weights digest, backend, backend version, precision, opset...), under the user cache.
It is built under a temporary name and renamed into place only once complete, with
``key.json`` written last, so a killed conversion never leaves an entry that looks usable;
the temporary folders of dead processes are removed by the next conversion. New weights give
a new digest, hence a new entry: the cache never serves a model for other weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Written last into a complete entry: its key, for people reading the cache.
ENTRY_MARK = "key.json"
#: Temporary folders older than this are abandoned whatever their process (another host's).
ABANDONED_AFTER_S = 24 * 3600


@dataclass(frozen=True)
class Converted:
    """Where a converted model lies and whether this call converted it (False: reused)."""

    path: Path
    converted: bool
    seconds: float


def model_digest(model: torch.nn.Module, section: Mapping[str, Any] | None = None) -> str:
    """sha256 of the model's class, structure, settings, config section and every weight and
    buffer.

    Weights alone do not decide the output: two models with equal weights but another final
    activation (``final_sigmoid``) compute different outputs, so the module tree, each
    module's plain settings and the config section are hashed too.
    """
    digest = hashlib.sha256()
    cls = type(model)
    digest.update(f"{cls.__module__}.{cls.__qualname__}\n{model!r}\n".encode())
    digest.update("\n".join(_settings(model)).encode())
    digest.update(json.dumps(section or {}, sort_keys=True, default=str).encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"\n{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(-1).view(_bytes_dtype()).numpy().tobytes())
    return digest.hexdigest()


def _settings(model: torch.nn.Module) -> list[str]:
    """``module.attribute=value`` for every plain public attribute of every submodule."""
    plain = (bool, int, float, str, type(None))
    found = []
    for prefix, module in model.named_modules():
        for key, value in sorted(vars(module).items()):
            if key.startswith("_") or key == "training":
                continue
            if isinstance(value, plain) or (
                isinstance(value, tuple | list) and all(isinstance(v, plain) for v in value)
            ):
                found.append(f"{prefix}.{key}={value!r}")
    return found


def _bytes_dtype() -> Any:
    import torch

    return torch.uint8


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir`` or the user cache, + ``converted-models``."""
    from unet_core.io.user_cache import user_cache_dir

    base = Path(cache_dir).expanduser() if cache_dir is not None else user_cache_dir()
    return base / "converted-models"


def derived_cache(entry: Path, kind: str) -> Path:
    """A folder for what a backend derives from the converted ``entry`` (e.g. compiled
    kernels): ``<cache base>/<kind>/<entry name>``, beside ``converted-models`` so that an
    entry's own files stay exactly as converted."""
    return entry.parent.parent / kind / entry.name


def entry_name(backend: str, key: Mapping[str, Any]) -> str:
    """The folder name of a key: the backend, then a digest of everything in the key."""
    text = json.dumps({"backend": backend, **key}, sort_keys=True, default=str)
    return f"{backend}-{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def cached_conversion(
    backend: str,
    key: Mapping[str, Any],
    make: Callable[[Path], None],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Converted:
    """The entry of ``key``, made by ``make(folder)`` unless complete in the cache already."""
    root = cache_root(cache_dir)
    entry = root / entry_name(backend, key)
    if (entry / ENTRY_MARK).is_file():
        log.info("Inference backend %s: reusing the converted model in %s", backend, entry)
        return Converted(entry, False, 0.0)
    start = time.perf_counter()
    tmp = _new_temporary(root, entry.name, backend)
    try:
        make(tmp)
        text = json.dumps({"backend": backend, **key}, indent=1, sort_keys=True, default=str)
        (tmp / ENTRY_MARK).write_text(text + "\n", encoding="utf-8")
        _install(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - start
    log.info("Inference backend %s: converted the model in %.1f s into %s", backend, seconds, entry)
    return Converted(entry, True, seconds)


def _new_temporary(root: Path, name: str, backend: str) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        remove_abandoned(root)
        return Path(tempfile.mkdtemp(prefix=f".{name}.{_owner()}.", dir=root))
    except OSError as exc:
        raise ConfigError(
            f"The inference backend {backend} cannot write its converted-model cache {root} "
            f"({exc.strerror or exc}). Set predictor.backend.cache_dir to a writable folder "
            "(or XDG_CACHE_HOME), or use predictor.backend: torch."
        ) from None


def _owner() -> str:
    """``host~pid`` of this process, so that another process can tell it is gone."""
    return f"{socket.gethostname().replace('.', '_')}~{os.getpid()}"


def _install(tmp: Path, entry: Path) -> None:
    """Rename the complete ``tmp`` to ``entry`` (durably); another process may have won."""
    from unet_core.io.atomic import fsync_path

    for path in tmp.iterdir():
        fsync_path(path)
    try:
        os.replace(tmp, entry)
    except OSError:
        if not (entry / ENTRY_MARK).is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # the same conversion, finished first elsewhere
        return
    fsync_path(entry.parent, directory=True)


def remove_abandoned(root: Path) -> list[Path]:
    """Remove temporary folders whose process ended (killed mid-conversion); returns them."""
    removed = []
    host = socket.gethostname().replace(".", "_")
    for path in root.glob(".*"):
        try:
            owner_host, pid = _split_owner(path.name)
            old = time.time() - path.stat().st_mtime > ABANDONED_AFTER_S
        except (ValueError, OSError):
            continue
        if old or (owner_host == host and not _alive(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _split_owner(name: str) -> tuple[str, int]:
    """``(host, pid)`` from ``.<entry>.<host>~<pid>.<random>``; ValueError if not ours."""
    parts = name.split(".")
    host, _, pid = parts[-2].rpartition("~") if len(parts) == 4 else ("", "", "")
    if not host or not pid.isdigit():
        raise ValueError(name)
    return host, int(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
