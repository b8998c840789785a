"""Checkpoints: reference formats load, mismatches explain themselves, saving is atomic."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_core import registry
from unet_core.engine.checkpoint import (
    REFERENCE_KEYS,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
    state_dict_of,
    strip_wrapper_prefixes,
    unwrap_model,
)
from unet_core.errors import CheckpointError
from unet_plugins.models.diagnosis import infer_unet_config


def tiny(name: str = "UNet3D", **kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = {
        "name": name,
        "in_channels": 1,
        "out_channels": 1,
        "f_maps": 4,
        "num_levels": 2,
        "num_groups": 4,
    }
    spec.update(kw)
    if isinstance(spec["f_maps"], list):
        del spec["num_levels"]  # a list sets the levels
    return registry.create("models", spec)


def reference_checkpoint(model: torch.nn.Module) -> dict:
    """What the reference's trainer writes (utils.save_checkpoint), keys in its order."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(1, 1, 8, 8, 8)).mean().backward()
    opt.step()
    return {
        "num_epochs": 3,
        "num_iterations": 120,
        "model_state_dict": model.state_dict(),
        "best_eval_score": np.float64(0.75),  # the reference's running averages are numpy
        "optimizer_state_dict": opt.state_dict(),
    }


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- loading --------------------------------------------------------------------------------
def test_reference_format_round_trip(tmp_path: Path) -> None:
    src = tiny()
    path = tmp_path / "best_checkpoint.pytorch"
    torch.save(reference_checkpoint(src), path)  # written exactly as the reference does
    ckpt = load_checkpoint(path)
    assert list(ckpt) == list(REFERENCE_KEYS)
    assert ckpt["num_iterations"] == 120 and ckpt["best_eval_score"] == 0.75
    dst = tiny()
    torch.nn.init.zeros_(dst.final_conv.weight)
    load_model_weights(dst, path)
    assert same_weights(src, dst)
    opt = torch.optim.Adam(dst.parameters(), lr=1e-3)
    opt.load_state_dict(ckpt["optimizer_state_dict"])  # resumable
    assert opt.state_dict()["state"][0]["step"].item() == 1


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_bare_and_prefixed_state_dicts(tmp_path: Path, prefix: str) -> None:
    src = tiny()
    path = tmp_path / "weights.pt"
    torch.save({prefix + k: v for k, v in src.state_dict().items()}, path)
    ckpt = load_checkpoint(path)
    assert list(ckpt) == ["model_state_dict"]
    assert list(ckpt["model_state_dict"]) == list(src.state_dict())
    dst = tiny()
    torch.nn.init.zeros_(dst.final_conv.bias)
    load_model_weights(dst, path)
    assert same_weights(src, dst)


def test_load_into_wrapped_models_and_state_dict_of() -> None:
    src, dst = tiny(), tiny()
    torch.nn.init.ones_(src.final_conv.weight)
    dp = torch.nn.DataParallel(dst)
    compiled = torch.compile(dp)  # wrapping only; nothing is compiled until called
    assert unwrap_model(compiled) is dst
    load_model_weights(compiled, {"model_state_dict": src.state_dict()})
    assert same_weights(src, dst)
    assert list(state_dict_of(compiled)) == list(src.state_dict())
    assert all(not k.startswith(("module.", "_orig_mod.")) for k in state_dict_of(dp))


def test_strip_only_shared_prefixes() -> None:
    sd = {"module.a": 1, "other.b": 2}
    assert strip_wrapper_prefixes(sd) == sd


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pytorch")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)


def test_garbage_and_truncated_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pytorch"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="Cannot read checkpoint.*not a file saved with"):
        load_checkpoint(bad)
    good = tmp_path / "good.pytorch"
    torch.save({"model_state_dict": tiny().state_dict()}, good)
    cut = tmp_path / "cut.pytorch"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{cut}.*truncated or corrupted") as caught:
        load_checkpoint(cut)
    empty = tmp_path / "empty.pytorch"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="the file is empty"):
        load_checkpoint(empty)
    random = tmp_path / "random.pytorch"
    random.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(random)
    # torch's advice to load with weights_only=False is never passed on
    assert "weights_only` set to `False`" not in str(caught.value)
    assert "Cannot read checkpoint" in str(caught.value)


class Pickled:
    """A custom object: weights_only loading must refuse it."""


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pytorch"
    torch.save({"model_state_dict": {}, "extra": Pickled()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_non_checkpoint_contents(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="not a dict"):
        load_checkpoint(path)
    torch.save({"epoch": 1, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="without 'model_state_dict'"):
        load_checkpoint(path)


# -- mismatches -----------------------------------------------------------------------------
def mismatch(src: torch.nn.Module, dst: torch.nn.Module, **kw: object) -> str:
    with pytest.raises(CheckpointError) as info:
        load_model_weights(dst, {"model_state_dict": src.state_dict()}, **kw)  # type: ignore[arg-type]
    return str(info.value)


def test_f_maps_mismatch_names_the_field() -> None:
    msg = mismatch(tiny(f_maps=8), tiny(f_maps=4), model_config={"name": "UNet3D", "f_maps": 4})
    assert "model.f_maps: checkpoint [8, 16] vs model [4, 8], config says 4" in msg
    assert "Shape differences" in msg and "[8,1,3,3,3] vs [4,1,3,3,3]" not in msg
    assert "encoders.0.basic_module.SingleConv1.conv.weight [4,1,3,3,3] vs [2,1,3,3,3]" in msg
    assert "\n" not in msg and "Traceback" not in msg


def test_layer_order_mismatch_groupnorm_vs_batchnorm() -> None:
    msg = mismatch(tiny(layer_order="bcr"), tiny(layer_order="gcr"))
    assert "Missing in the checkpoint" in msg and "Not in the model" in msg
    assert "model.layer_order: checkpoint uses BatchNorm ('b') vs model GroupNorm ('g')" in msg


def test_levels_class_dims_and_channels_mismatches() -> None:
    assert "model.num_levels: checkpoint 3 vs model 2" in mismatch(tiny(num_levels=3), tiny())
    msg = mismatch(tiny("ResidualUNet3D"), tiny("UNet3D"), model_config={"name": "UNet3D"})
    assert "model.name: checkpoint ResidualUNet3D vs model UNet3D" in msg
    assert "model.name: checkpoint UNet2D vs model UNet3D" in mismatch(tiny("UNet2D"), tiny())
    msg = mismatch(tiny(in_channels=2, out_channels=3), tiny())
    assert "model.in_channels: checkpoint 2 vs model 1" in msg
    assert "model.out_channels: checkpoint 3 vs model 1" in msg


def test_upsample_mismatch_for_residual_models() -> None:
    msg = mismatch(tiny("ResidualUNet3D"), tiny("ResidualUNet3D", upsample="nearest"))
    assert "model.upsample: checkpoint decoders use transposed conv vs model interpolation" in msg


def test_infer_config_from_state_dict() -> None:
    sd = tiny("ResidualUNetSE3D", f_maps=[8, 16, 24], in_channels=2, out_channels=3).state_dict()
    facts = infer_unet_config(sd)
    assert facts == {
        "num_levels": 3,
        "spatial_dims": 3,
        "model": "ResidualUNetSE3D",
        "f_maps": [8, 16, 24],
        "in_channels": 2,
        "out_channels": 3,
        "norm": "g",
        "upsampling": "transposed conv",
    }


def test_legacy_2d_weights_with_singleton_z_load() -> None:
    """Reference UNet2D before 2023-03 used Conv3d with (1,3,3) kernels."""
    src = tiny("UNet2D")
    old = {k: (v.unsqueeze(2) if v.dim() == 4 else v) for k, v in src.state_dict().items()}
    dst = tiny("UNet2D")
    torch.nn.init.zeros_(dst.final_conv.weight)
    load_model_weights(dst, old)
    assert same_weights(src, dst)


# -- saving ---------------------------------------------------------------------------------
def test_save_is_loadable_and_leaves_no_temp_files(tmp_path: Path) -> None:
    model = tiny()
    path = tmp_path / "run" / "sub" / "last_checkpoint.pytorch"  # parents are created
    save_checkpoint(reference_checkpoint(model), path)
    save_checkpoint(reference_checkpoint(model) | {"num_iterations": 7}, path)  # overwrite
    assert os.listdir(path.parent) == ["last_checkpoint.pytorch"]
    ckpt = torch.load(path, weights_only=False)  # plain torch.load reads it, as the reference
    assert ckpt["num_iterations"] == 7
    assert list(ckpt["model_state_dict"]) == list(model.state_dict())


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_full_disk_keeps_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "last_checkpoint.pytorch"
    old = {"model_state_dict": tiny().state_dict(), "num_iterations": 1}
    save_checkpoint(old, path)
    before = path.read_bytes()
    real_write = os.write
    budget = [4096]  # the disk fills up after a few KiB of the new file

    def write(fd: int, data: bytes) -> int:
        if _fd_path(fd).startswith(str(tmp_path)):
            if budget[0] <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            n = real_write(fd, bytes(memoryview(data)[: budget[0]]))
            budget[0] -= n
            return n
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    big = {"model_state_dict": tiny(f_maps=8).state_dict(), "num_iterations": 2}
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(big, path)
    monkeypatch.undo()
    msg = str(info.value)
    assert str(path) in msg and "disk is full" in msg and "unchanged" in msg
    assert path.read_bytes() == before
    assert load_checkpoint(path)["num_iterations"] == 1
    assert os.listdir(tmp_path) == ["last_checkpoint.pytorch"]


def test_unpicklable_state_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "c.pytorch"
    save_checkpoint({"model_state_dict": {}, "n": 1}, path)
    with pytest.raises(Exception, match="lambda|pickle|local object"):
        save_checkpoint({"model_state_dict": {}, "fn": lambda: 0}, path)
    assert load_checkpoint(path)["n"] == 1
    assert os.listdir(tmp_path) == ["c.pytorch"]


def test_unwritable_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CheckpointError, match="Could not write checkpoint"):
        save_checkpoint({"model_state_dict": {}}, blocker / "c.pytorch")
