"""Inference backends (``predictor.backend``): torch, onnxruntime, openvino as plugins.

Real conversions (ONNX export, OpenVINO IR) of a tiny UNet3D, real HDF5 in and out through
`unet predict --config`, a real converted-model cache on disk (killed mid-conversion by a
real SIGKILL), and the one-paragraph errors.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_support import run_here
from predict_support import config, read, save_weights, tiny_unet, write_volume

from unet_core import registry
from unet_core.errors import ConfigError, ExportError
from unet_core.prediction.backends import backend_forward
from unet_core.prediction.converted_models import (
    ENTRY_MARK,
    cache_root,
    cached_conversion,
    model_digest,
)
from unet_plugins.backends.openvino_backend import compiled_cache

ROOT = Path(__file__).resolve().parents[1]
#: bf16 against float32 probabilities of the tiny UNet (docs/prediction.md, "Inference
#: backends"): measured up to ~0.01; bf16 keeps 8 bits of mantissa.
BF16_TOLERANCE = 0.03

openvino = pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user cache of this test's own (the converted models land under it)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "unet-core" / "converted-models"


def _setup(tmp_path: Path, seed: int = 0) -> tuple[Path, Path, dict]:
    raw = np.random.default_rng(seed).normal(size=(12, 40, 36)).astype(np.float32)
    volume = write_volume(tmp_path / "volume.h5", raw)
    model, spec = tiny_unet(seed=seed)
    ckpt = save_weights(model, tmp_path / f"weights{seed}.pytorch")
    return volume, ckpt, spec


def _predict(
    capsys, tmp_path: Path, name: str, volume, ckpt, spec, log: list | None = None, **predictor
) -> np.ndarray:
    """`unet predict --config` with ``predictor`` keys; the predictions it wrote (its stderr,
    where the CLI shows the engine's log lines, appended to ``log``)."""
    out = tmp_path / name
    cfg = config(spec, ckpt, [volume], out, predictor={"name": "StandardPredictor", **predictor})
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_here(capsys, "predict", "--config", str(path))
    assert code == 0, err
    if log is not None:
        log.append(err)
    return read(out / "volume_predictions.h5")


def _entries(cache: Path, backend: str) -> list[Path]:
    return sorted(p for p in cache.glob(f"{backend}-*") if (p / ENTRY_MARK).is_file())


# -- the kind -----------------------------------------------------------------------------------
def test_backends_are_a_plugin_kind_listed_by_unet_plugins(capsys):
    code, out, _ = run_here(capsys, "plugins", "list", "--kind", "backends")
    assert code == 0
    for name in ("torch", "onnxruntime", "openvino"):
        assert name in out
    assert registry.list("backends") == ["onnxruntime", "openvino", "torch"]


def test_backend_is_validated_with_its_own_schema(tmp_path):
    from unet_core.config import config_from_dict

    volume, ckpt, spec = _setup(tmp_path)
    base = config(spec, ckpt, [volume], tmp_path)
    for backend, expected in [
        ("openvno", "did you mean `openvino`"),
        ({"name": "onnxruntime", "precision": "bf16"}, "onnxruntime runs float32"),
        ({"name": "openvino", "precison": "f32"}, "precison"),
    ]:
        base["predictor"] = {"name": "StandardPredictor", "backend": backend}
        with pytest.raises(ConfigError, match="predictor.backend") as info:
            config_from_dict(base)
        assert expected in str(info.value)
    base["predictor"] = {"name": "StandardPredictor", "backend": "openvino"}
    cfg = config_from_dict(base)
    assert cfg.predictor.config.backend.name == "openvino"
    assert cfg.predictor.config.backend.config.precision == "auto"
    assert cfg.model_dump()["predictor"]["backend"] == {"name": "openvino"}


# -- agreement with the torch backend, through `unet predict` -------------------------------
@pytest.mark.slow  # real conversions: ~10-20 s each on an idle 2-core machine
def test_openvino_float32_matches_torch_through_unet_predict(tmp_path, capsys, cache):
    volume, ckpt, spec = _setup(tmp_path)
    keys = {"fast": True, "tile_shape": [8, 16, 16], "tta": "flips"}
    ref = _predict(capsys, tmp_path, "torch", volume, ckpt, spec, amp="none", **keys)
    got = _predict(
        capsys, tmp_path, "ov", volume, ckpt, spec,
        backend={"name": "openvino", "precision": "f32"}, **keys,
    )  # fmt: skip
    assert got.shape == ref.shape == (2, 12, 40, 36)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert len(_entries(cache, "openvino")) == 1
    (entry,) = _entries(cache, "openvino")
    assert sorted(p.name for p in entry.iterdir()) == [
        "key.json", "model.bin", "model.xml",
    ]  # fmt: skip
    # OpenVINO's compiled kernels are kept beside the cache, one folder per converted model
    compiled = cache.parent / "openvino-compiled" / entry.name
    assert compiled == compiled_cache(entry) and any(compiled.iterdir())


@pytest.mark.slow  # real conversions: ~10-20 s each on an idle 2-core machine
def test_openvino_bf16_stays_within_the_documented_tolerance(tmp_path, capsys, cache):
    volume, ckpt, spec = _setup(tmp_path)
    ref = _predict(capsys, tmp_path, "torch", volume, ckpt, spec)
    got = _predict(
        capsys,
        tmp_path,
        "ov",
        volume,
        ckpt,
        spec,
        backend={"name": "openvino", "precision": "bf16"},
    )
    diff = float(np.abs(got - ref).max())
    assert diff < BF16_TOLERANCE
    bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if bf16:  # really computed in bf16, not silently in float32
        assert diff > 1e-5


# -- the cache --------------------------------------------------------------------------------
@pytest.mark.slow  # real conversions: ~10-20 s each on an idle 2-core machine
def test_onnxruntime_matches_torch_reuses_its_conversion_and_converts_new_weights(
    tmp_path, capsys, cache
):
    """float32 agreement, the second run loads the cached graph, new weights convert again."""
    volume, ckpt, spec = _setup(tmp_path)
    backend = {"name": "onnxruntime"}
    log: list[str] = []
    first = _predict(capsys, tmp_path, "a", volume, ckpt, spec, log, backend=backend, tta="flips")
    assert "converted the model" in log[-1]
    torch_first = _predict(capsys, tmp_path, "t", volume, ckpt, spec, tta="flips")
    np.testing.assert_allclose(first, torch_first, atol=1e-4)
    (entry,) = _entries(cache, "onnxruntime")
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in entry.iterdir()}

    again = _predict(capsys, tmp_path, "b", volume, ckpt, spec, log, backend=backend, tta="flips")
    assert "reusing the converted model" in log[-1] and "converted the model" not in log[-1]
    assert _entries(cache, "onnxruntime") == [entry]
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in entry.iterdir()} == before
    np.testing.assert_array_equal(again, first)

    # other weights under the same file name: a new conversion, never the old graph
    model, _ = tiny_unet(seed=1)
    save_weights(model, ckpt)
    changed = _predict(capsys, tmp_path, "c", volume, ckpt, spec, log, backend=backend)
    assert "converted the model" in log[-1]
    assert len(_entries(cache, "onnxruntime")) == 2
    reference = _predict(capsys, tmp_path, "d", volume, ckpt, spec)
    np.testing.assert_allclose(changed, reference, atol=1e-4)
    assert np.abs(changed - first).max() > 1e-3


def test_digest_changes_with_weights_and_final_activation():
    model, _ = tiny_unet(seed=0)
    same, _ = tiny_unet(seed=0)
    other, _ = tiny_unet(seed=1)
    softmax, _ = tiny_unet(seed=0, final_sigmoid=True)
    assert model_digest(model) == model_digest(same)
    assert model_digest(model) != model_digest(other)
    assert model_digest(model) != model_digest(softmax)
    assert model_digest(model, {"f_maps": 4}) != model_digest(model, {"f_maps": 8})


KILLED_CONVERSION = """
import sys, time
from pathlib import Path
from unet_core.prediction.converted_models import cached_conversion

def make(folder):
    (folder / "model.onnx").write_bytes(b"half a graph")
    print("WRITING", flush=True)
    time.sleep(60)

cached_conversion("onnxruntime", {"weights": "w"}, make, cache_dir=sys.argv[1])
"""


def test_a_conversion_killed_midway_leaves_no_entry(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CONVERSION, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "WRITING"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    root = cache_root(tmp_path)
    leftovers = list(root.iterdir())
    assert [p.name.startswith(".") for p in leftovers] == [True]  # only the temporary folder
    assert not list(root.glob("onnxruntime-*"))

    made = cached_conversion(
        "onnxruntime",
        {"weights": "w"},
        lambda folder: (folder / "model.onnx").write_bytes(b"whole graph"),
        cache_dir=tmp_path,
    )
    assert made.converted and (made.path / "model.onnx").read_bytes() == b"whole graph"
    assert sorted(root.iterdir()) == [made.path]  # the dead process's folder is gone
    reused = cached_conversion("onnxruntime", {"weights": "w"}, _never, cache_dir=tmp_path)
    assert not reused.converted and reused.path == made.path


def _never(folder: Path) -> None:
    raise AssertionError("a complete entry must not be converted again")


# -- one-paragraph errors -------------------------------------------------------------------------
def test_missing_runtime_package_names_the_extra(tmp_path, capsys, monkeypatch):
    volume, ckpt, spec = _setup(tmp_path)
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    cfg = config(spec, ckpt, [volume], tmp_path / "out",
                 predictor={"name": "StandardPredictor", "backend": "openvino"})  # fmt: skip
    path = tmp_path / "c.yml"
    path.write_text(yaml.safe_dump(cfg))
    code, _, err = run_here(capsys, "predict", "--config", str(path))
    assert code != 0 and "Traceback" not in err
    text = " ".join(err.split())
    assert "needs the openvino package, which is not installed" in text
    assert "unet-core[openvino]" in text and "predictor.backend: torch" in text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cpu_only_backends_refuse_a_gpu_device():
    model, spec = tiny_unet()
    for name in ("onnxruntime", "openvino"):
        with pytest.raises(ConfigError, match=f"predictor.backend: {name} runs on cpu only"):
            backend_forward(name, model, torch.device("cuda", 0), model_section=spec)
    assert backend_forward("torch", model, torch.device("cuda", 0)) is None


class _DataDependent(torch.nn.Module):
    """A branch on a tensor's value: what a graph exporter cannot trace."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.mean()) > 0:
            return torch.sigmoid(x)
        return torch.sigmoid(-x)


def test_a_model_the_exporter_cannot_convert_is_one_paragraph(cache):
    forward = backend_forward("onnxruntime", _DataDependent(), torch.device("cpu"))
    assert forward is not None
    with pytest.raises(ExportError) as info:
        forward(torch.ones(1, 1, 4, 8, 8))
    message = info.value.message
    assert "predictor.backend: torch instead of onnxruntime" in message
    assert "--format torchscript" not in message and "\n" not in message.strip()
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-made left


def test_openvino_auto_precision_follows_the_cpu():
    from unet_plugins.backends.openvino_backend import cpu_has_bf16

    assert cpu_has_bf16(["FP32", "BF16", "INT8"])
    assert not cpu_has_bf16(["FP32", "FP16", "INT8", "BIN"])


def test_backend_plugin_from_another_package_is_named_in_yaml(tmp_path, capsys):
    """A third-party backend: registered like a plugin, validated with its own schema."""
    from pydantic import Field

    from unet_core.interfaces import ComponentConfig, InferenceBackend

    calls: list[tuple[int, ...]] = []

    class DoubleConfig(ComponentConfig):
        factor: float = Field(2.0, description="output scale")

    class Scaling(InferenceBackend):
        Config = DoubleConfig
        devices = ("cpu",)

        def __init__(self, factor: float) -> None:
            self.factor = factor

        def prepare(self, model, device, model_key):
            assert len(model_key()) == 64

            def forward(x):
                calls.append(tuple(x.shape))
                return model(x) * self.factor

            return forward

    registry.register("backends", "scaling", Scaling)
    try:
        volume, ckpt, spec = _setup(tmp_path)
        ref = _predict(capsys, tmp_path, "torch", volume, ckpt, spec)
        got = _predict(
            capsys, tmp_path, "s", volume, ckpt, spec, backend={"name": "scaling", "factor": 3}
        )
    finally:
        registry.default_registry.unregister("backends", "scaling")
    assert calls and all(len(shape) == 5 for shape in calls)
    np.testing.assert_allclose(got, 3 * ref, atol=1e-5)
