"""``amp: auto``: bf16 where the device computes it natively, fp32 elsewhere; resolved once,
printed once, recorded in the checkpoint and run.json; reference prediction stays fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from predict_support import config as predict_config
from predict_support import save_weights, tiny_unet, write_volume
from test_train_support import reference_config, tiny

from unet_core.config import config_from_dict
from unet_core.engine.checkpoint import load_checkpoint
from unet_core.engine.precision import (
    cpu_flags,
    detect_native_bf16,
    resolve_precision,
)
from unet_core.errors import ConfigError
from unet_core.prediction.run import run_prediction
from unet_core.training.run import train

CPU = torch.device("cpu")
NATIVE = detect_native_bf16("cpu", cpu_flags=cpu_flags()) is not None


def test_auto_on_a_cpu_without_bf16_is_fp32() -> None:
    plain = resolve_precision("auto", CPU, flags={"sse4_2", "avx2", "avx512f", "fma"})
    assert plain.mode == "none" and plain.requested == "auto"
    assert plain.describe() == "precision: fp32 (auto: CPU has no native bf16)"


@pytest.mark.parametrize(
    ("flags", "name"),
    [({"avx2", "amx_bf16", "avx512_bf16"}, "AMX-BF16"), ({"avx512_bf16"}, "AVX512-BF16")],
)
def test_auto_on_a_cpu_with_bf16_is_bf16(flags: set[str], name: str) -> None:
    resolved = resolve_precision("auto", CPU, flags=flags)
    assert resolved.mode == "bf16"
    assert resolved.describe() == f"precision: bf16 (auto: CPU has {name})"


def test_auto_on_gpus_follows_compute_capability() -> None:
    cuda = torch.device("cuda")
    assert resolve_precision("auto", cuda, capability=(7, 5)).mode == "none"
    assert resolve_precision("auto", cuda, capability=(8, 0)).mode == "bf16"
    assert resolve_precision("auto", cuda, capability=(9, 0)).reason == (
        "auto: GPU compute capability 9.0"
    )


def test_explicit_choices_stay_and_fp16_needs_cuda() -> None:
    assert resolve_precision("none", CPU, flags={"amx_bf16"}).mode == "none"
    assert resolve_precision("bf16", CPU, flags=set()).mode == "bf16"
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", CPU, key="predictor.amp")


def test_training_defaults_to_auto_printed_once_and_recorded(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    cfg = tiny(reference_config(tmp_path / "ck"), iterations=2, every=2)
    assert "amp" not in cfg["trainer"]  # a reference config: no amp key
    torch.set_num_threads(1)
    train(config_from_dict(cfg))
    expected = resolve_precision("auto", CPU)
    err = capfd.readouterr().err
    assert err.count("precision: ") == 1 and expected.describe() in err
    ckpt = load_checkpoint(tmp_path / "ck" / "last_checkpoint.pytorch")
    assert ckpt["precision"] == {**expected.record(), "requested": "auto"}
    assert ckpt["config"]["trainer"]["amp"] == "auto"
    manifest = json.loads((tmp_path / "ck" / "run.json").read_text())
    assert manifest["precision"]["mode"] == expected.mode


def test_reference_prediction_stays_fp32_and_fast_mode_uses_auto(tmp_path: Path) -> None:
    model, spec = tiny_unet()
    raw = np.random.default_rng(0).random((12, 20, 20)).astype(np.float32)
    path = write_volume(tmp_path / "in.h5", raw)
    ckpt = save_weights(model, tmp_path / "w.pytorch")
    cfg = predict_config(spec, ckpt, [path], tmp_path / "ref")
    (reference,) = run_prediction(cfg)
    assert reference.stats["precision"] == "none"
    cfg = predict_config(
        spec, ckpt, [path], tmp_path / "fast", predictor={"name": "StandardPredictor", "fast": True}
    )
    (fast,) = run_prediction(cfg)
    assert fast.stats["precision"] == ("bf16" if NATIVE else "none")
