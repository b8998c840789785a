"""bioimage.io packages out and in: export, bioimageio checks, `unet predict --model PACKAGE`.

One tiny UNet3D is trained for two iterations on the real nuclei volume; everything else reads
its checkpoint or the package exported from it.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from cli_support import run_here as run_cli_here
from export_support import META, predict_crop
from test_train_support import DATA

pytest.importorskip("bioimageio.spec")


@pytest.fixture(scope="module")
def exported(exported_package: dict[str, Path]) -> dict[str, Path]:
    return exported_package


_predict = predict_crop


# -- export ---------------------------------------------------------------------------------------
def test_the_package_passes_bioimageio_validation_and_test_model(exported, bioimageio_core):
    from bioimageio.spec import load_description

    descr = load_description(exported["package"], format_version="latest")
    assert descr.validation_summary.status in ("valid-format", "passed")
    formats = ("pytorch_state_dict", "torchscript", "onnx")
    results = bioimageio_core.test_model(exported["package"], *formats)
    assert sorted(results) == sorted(formats)
    for weights, (status, failed) in results.items():
        assert status == "passed", (weights, failed)


def test_the_package_describes_the_network(exported):
    from unet_core.exchange.source import load_export_source

    rdf = yaml.safe_load((exported["folder"] / "rdf.yaml").read_text())
    source = load_export_source(exported["checkpoint"])
    [inp], [out] = rdf["inputs"], rdf["outputs"]
    spatial = [a for a in inp["axes"] if a["type"] == "space"]
    assert [a["id"] for a in spatial] == ["z", "y", "x"]
    assert all(a["size"]["step"] == 2 for a in spatial)  # two levels: one 2x pooling
    halos = [a["halo"] for a in out["axes"] if a["type"] == "space"]
    rf = source.model_class.receptive_field(source.model.config)
    assert halos == [r // 2 for r in rf]
    assert all(a["size"]["min"] > 2 * h for a, h in zip(spatial, halos))
    steps = [p["id"] for p in inp["preprocessing"] if p["id"] != "ensure_dtype"]
    assert steps == ["zero_mean_unit_variance"]
    arch = rdf["weights"]["pytorch_state_dict"]["architecture"]
    assert (arch["import_from"], arch["callable"]) == (type(source.model).__module__, "UNet3D")
    assert set(rdf["weights"]) == {"pytorch_state_dict", "torchscript", "onnx"}
    # the test output is the network's output on the standardised test input
    x = np.load(exported["folder"] / inp["test_tensor"]["source"])
    y = np.load(exported["folder"] / out["test_tensor"]["source"])
    assert x.std() > 1  # the raw volume, not noise or a normalised copy
    z = (x - x.mean()) / (x.std() + 1e-6)
    with torch.no_grad():
        expected = source.model(torch.from_numpy(z.astype(np.float32))).numpy()
    np.testing.assert_allclose(y, expected, atol=1e-5)
    import imageio.v3 as iio

    cover = iio.imread(exported["folder"] / rdf["covers"][0]["source"])
    assert cover.shape[1] == 2 * cover.shape[0] and cover.std() > 0


def test_a_transform_without_equivalent_is_refused(exported, tmp_path, capsys):
    from unet_core.engine.checkpoint import load_checkpoint

    config = load_checkpoint(exported["checkpoint"])["config"]
    config["loaders"]["val"]["transformer"]["raw"].insert(1, {"name": "GaussianBlur3D"})
    path = tmp_path / "blur.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "pkg.zip"
    code, _, err = run_cli_here(
        capsys,
        "export",
        str(exported["checkpoint"]),
        "--format",
        "bioimageio",
        "-o",
        str(out),
        "--config",
        str(path),
        "--metadata",
        str(exported["root"] / "meta.yaml"),
    )
    assert code != 0 and "Traceback" not in err
    assert "transformer.raw[1] (GaussianBlur3D) has no bioimage.io" in err
    assert list(tmp_path.iterdir()) == [path]


# -- import ---------------------------------------------------------------------------------------
def test_round_trip_state_dict_package_predicts_like_the_checkpoint(exported, tmp_path):
    expected = _predict(exported["checkpoint"], tmp_path, final_sigmoid=True)
    for form in (exported["package"], exported["folder"], exported["folder"] / "rdf.yaml"):
        got = _predict(form, tmp_path)
        assert np.abs(got - expected).max() < 1e-5, form


def test_a_package_without_known_architecture_runs_its_torchscript(exported, tmp_path):
    folder = tmp_path / "scripted"
    shutil.copytree(exported["folder"], folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    rdf["weights"]["pytorch_state_dict"]["architecture"]["import_from"] = "elsewhere.nets"
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))

    from unet_core.exchange.package_model import ScriptedNetwork, load_package_model

    assert isinstance(load_package_model(folder), ScriptedNetwork)
    expected = _predict(exported["checkpoint"], tmp_path, final_sigmoid=True)
    got = _predict(folder, tmp_path)
    assert np.abs(got - expected).max() < 1e-4


def test_a_package_with_only_onnx_weights_runs_them(exported, tmp_path):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "onnx-only"
    shutil.copytree(exported["folder"], folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "SomeoneElsesNet"
    del rdf["weights"]["torchscript"]
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))

    from unet_core.exchange.package_model import OnnxNetwork, load_package_model

    assert isinstance(load_package_model(folder), OnnxNetwork)
    expected = _predict(exported["checkpoint"], tmp_path, final_sigmoid=True)
    assert np.abs(_predict(folder, tmp_path) - expected).max() < 1e-4


def test_a_plantseg_style_package_loads_as_the_native_model(exported, tmp_path):
    """pytorch-3dunet architecture reference (spec 0.4 layout), reference kwargs and weights."""
    from unet_core.engine.checkpoint import load_checkpoint
    from unet_core.exchange.package_model import load_package_model

    folder = tmp_path / "plantseg"
    folder.mkdir()
    state = load_checkpoint(exported["checkpoint"])["model_state_dict"]
    torch.save(state, folder / "best_checkpoint.pytorch")
    rdf = {
        "type": "model",
        "format_version": "0.4.10",
        "name": "plantseg-like",
        "inputs": [
            {
                "name": "raw",
                "axes": "bczyx",
                "data_type": "float32",
                "shape": {"min": [1, 1, 16, 32, 32], "step": [0, 0, 2, 2, 2]},
            }
        ],
        "outputs": [
            {
                "name": "probs",
                "axes": "bczyx",
                "data_type": "float32",
                "shape": {
                    "reference_tensor": "raw",
                    "scale": [1, 1, 1, 1, 1],
                    "offset": [0, 0, 0, 0, 0],
                },
            }
        ],
        "weights": {
            "pytorch_state_dict": {
                "source": "best_checkpoint.pytorch",
                "architecture": "pytorch3dunet.unet3d.model:UNet3D",
                "kwargs": {
                    "in_channels": 1,
                    "out_channels": 1,
                    "layer_order": "gcr",
                    "f_maps": 4,
                    "num_groups": 2,
                    "num_levels": 2,
                    "final_sigmoid": True,
                    "is_segmentation": True,
                },
            }
        },
    }
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    model = load_package_model(folder)
    assert type(model).__name__ == "UNet3D" and model.spatial_dims == 3
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    expected = _predict(exported["checkpoint"], tmp_path, final_sigmoid=True)
    assert np.abs(_predict(folder, tmp_path) - expected).max() < 1e-5


def _broken(exported, tmp_path, change) -> Path:
    folder = tmp_path / "broken"
    shutil.copytree(exported["folder"], folder)
    rdf = yaml.safe_load((folder / "rdf.yaml").read_text())
    change(rdf, folder)
    (folder / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    return folder


def _unsupported(rdf, folder):
    rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] = "SwinUNETR"
    del rdf["weights"]["torchscript"], rdf["weights"]["onnx"]


def _time_axis(rdf, folder):
    rdf["inputs"][0]["axes"].insert(2, {"type": "time", "size": 4})


def _steps(role: str, *steps: dict):
    key, field = ("inputs", "preprocessing") if role == "pre" else ("outputs", "postprocessing")

    def change(rdf, folder):
        rdf[key][0][field] = list(steps)

    return change


BAD = {
    "missing weights": (lambda rdf, f: (f / "weights.pt").unlink(), "holds no such file"),
    "output statistics": (
        _steps("post", {"id": "zero_mean_unit_variance", "kwargs": {}}),
        "postprocessing[0]: zero_mean_unit_variance, which needs statistics of the whole output",
    ),
    "per-slice statistics": (
        _steps("pre", {"id": "zero_mean_unit_variance", "kwargs": {"axes": ["y", "x"]}}),
        "with statistics over axes ['y', 'x'] only",
    ),
    "per-channel values": (
        _steps("pre", {"id": "scale_linear", "kwargs": {"gain": [1.0, 2.0], "axis": "channel"}}),
        "scale_linear, with one value per channel",
    ),
    "unknown step": (
        _steps("post", {"id": "stardist_postprocessing", "kwargs": {}}),
        "stardist_postprocessing, which unet-core does not know",
    ),
    "wrong sha256": (
        lambda rdf, f: rdf["weights"]["pytorch_state_dict"].update(sha256="0" * 64),
        "does not match the sha256",
    ),
    "unsupported architecture": (_unsupported, "architecture 'SwinUNETR' that unet-core does not"),
    "axes": (_time_axis, "cannot be run by it"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_package_is_one_paragraph(exported, tmp_path, capsys, case):
    change, message = BAD[case]
    folder = _broken(exported, tmp_path, change)
    config = tmp_path / "predict.yaml"
    config.write_text(
        json.dumps(
            {
                "model": {"name": "UNet3D", "in_channels": 1, "out_channels": 1},
                "device": "cpu",
                "loaders": {
                    "output_dir": str(tmp_path / "out"),
                    "raw_internal_path": "raw",
                    "test": {"file_paths": [str(DATA / "nuclei3d_train_b.h5")]},
                },
            }
        )
    )
    code, _, err = run_cli_here(capsys, "predict", "--config", str(config), "--model", str(folder))
    assert code != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 12  # one wrapped paragraph
    assert not (tmp_path / "out").exists()


def test_a_package_is_a_pre_trained_start_for_fine_tuning(exported, tmp_path):
    """trainer.pre_trained: a package trains on like the checkpoint it came from."""
    from export_support import TINY_MODEL
    from test_train_support import reference_config, tiny

    from unet_core.config import config_from_dict
    from unet_core.engine.checkpoint import load_checkpoint
    from unet_core.training.run import train

    original = load_checkpoint(exported["checkpoint"])["model_state_dict"]
    packaged = load_checkpoint(exported["package"])["model_state_dict"]
    assert original.keys() == packaged.keys()
    assert all(torch.equal(original[k], packaged[k]) for k in original)
    cfg = tiny(
        reference_config(tmp_path / "ck", pre_trained=str(exported["package"])),
        iterations=1,
        every=1,
    )
    cfg["model"].update(TINY_MODEL)
    trainer = train(config_from_dict(cfg))
    assert trainer.iteration >= 1


def test_the_package_normalisation_replaces_other_test_transforms(exported, tmp_path, caplog):
    """The package's zero_mean_unit_variance is applied, not the config's PercentileNormalizer."""
    import logging

    expected = _predict(exported["checkpoint"], tmp_path, final_sigmoid=True)
    percentiles = [{"name": "PercentileNormalizer"}, {"name": "ToTensor", "expand_dims": True}]
    with caplog.at_level(logging.WARNING):
        got = _predict(exported["package"], tmp_path / "pkg", raw=percentiles)
    assert np.abs(got - expected).max() < 1e-5
    [warning] = [r.getMessage() for r in caplog.records if "replaces" in r.getMessage()]
    assert "['zero_mean_unit_variance']" in warning and "PercentileNormalizer" in warning


def test_a_2d_softmax_model_with_percentile_normalisation_exports(
    tmp_path, capsys, bioimageio_core
):
    """UNet2D, two softmax channels, PercentileNormalizer -> scale_range; sample from --sample."""
    import h5py

    from unet_core import registry
    from unet_core.config import config_from_dict

    spec = {
        "name": "UNet2D",
        "in_channels": 1,
        "out_channels": 2,
        "f_maps": 4,
        "num_levels": 3,
        "num_groups": 2,
        "final_sigmoid": False,
    }
    raw = [
        {"name": "PercentileNormalizer", "pmin": 2.0, "pmax": 98.0},
        {"name": "ToTensor", "expand_dims": True},
    ]
    cfg = config_from_dict(
        {
            "model": spec,
            "loaders": {"val": {"file_paths": ["unused.h5"], "transformer": {"raw": raw}}},
        }
    )
    torch.manual_seed(0)
    model = registry.create("models", spec)
    checkpoint = tmp_path / "2d.pytorch"
    torch.save(
        {"model_state_dict": model.state_dict(), "config": cfg.model_dump(mode="json")}, checkpoint
    )
    sample = tmp_path / "sample.h5"
    with h5py.File(sample, "w") as f:
        f["raw"] = (np.random.default_rng(1).random((1, 90, 70)) * 200).astype(np.uint8)
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(META))
    out = tmp_path / "2d.zip"
    code, _, err = run_cli_here(
        capsys,
        "export",
        str(checkpoint),
        "--format",
        "bioimageio",
        "-o",
        str(out),
        "--sample",
        str(sample),
        "--no-onnx",
        "--metadata",
        str(tmp_path / "meta.yaml"),
    )
    assert code == 0, err
    with zipfile.ZipFile(out) as z:
        rdf = yaml.safe_load(z.read("rdf.yaml"))
        x = np.load(io.BytesIO(z.read("test_input.npy")))
        y = np.load(io.BytesIO(z.read("test_output.npy")))
    [inp] = rdf["inputs"]
    assert [a.get("id") for a in inp["axes"]][2:] == ["y", "x"]
    assert [a["size"]["step"] for a in inp["axes"][2:]] == [4, 4]
    steps = [p for p in inp["preprocessing"] if p["id"] != "ensure_dtype"]
    [step] = steps  # (PyYAML reads the written "1e-06" as a string: YAML 1.1)
    assert step["id"] == "scale_range" and float(step["kwargs"].pop("eps")) == 1e-6
    assert step["kwargs"] == {"min_percentile": 2.0, "max_percentile": 98.0}
    assert x.shape == (1, 1, 88, 68) and y.shape == (1, 2, 88, 68)  # multiples of 4
    np.testing.assert_allclose(y.sum(axis=1), 1, atol=1e-5)  # softmax inside the network
    [(status, failed)] = bioimageio_core.test_model(out, "pytorch_state_dict").values()
    assert status == "passed", failed


def test_spec_04_channel_counts_are_read_from_shapes():
    """TorchScript packages in the 0.4 layout state channels through (min, step) / offsets."""
    from unet_core.exchange.package_model import _channels
    from unet_core.io.model_package import ModelPackage

    rdf = {
        "inputs": [{"axes": "bczyx", "shape": {"min": [1, 2, 16, 32, 32], "step": [0] * 5}}],
        "outputs": [
            {
                "axes": "bczyx",
                "shape": {
                    "reference_tensor": "raw",
                    "scale": [1, 0, 1, 1, 1],
                    "offset": [0, 1.5, 0, 0, 0],
                },
            }
        ],
    }
    package = ModelPackage(Path("pkg"), rdf, None, Path("."))
    assert (_channels(package, "inputs"), _channels(package, "outputs")) == (2, 3)


PLANTSEG = Path(__file__).parent / "data" / "plantseg-unet3d"


def test_a_package_made_by_pytorch3dunet_predicts_like_the_reference(tmp_path, capsys):
    """tests/data/plantseg-unet3d: built as PlantSeg publishes its UNet3D models, weights and
    test output from pytorch-3dunet itself (make_package.py); `unet predict --model` on its
    test input gives the reference network's output, as the native UNet3D, normalised by the
    package's own zero_mean_unit_variance (the config normalises nothing)."""
    import h5py

    from unet_core.exchange.package_model import load_package_model

    model = load_package_model(PLANTSEG)
    assert type(model).__name__ == "UNet3D" and type(model).__module__.startswith("unet_plugins")
    x, expected = np.load(PLANTSEG / "test_input.npy"), np.load(PLANTSEG / "test_output.npy")
    raw = tmp_path / "raw.h5"
    with h5py.File(raw, "w") as f:
        f["raw"] = x[0, 0]
    config = tmp_path / "predict.yaml"
    shape = list(x.shape[2:])
    builder = {"name": "SliceBuilder", "patch_shape": shape, "stride_shape": shape}
    builder["skip_shape_check"] = True
    test = {"file_paths": [str(raw)], "slice_builder": builder, "transformer": {"raw": TENSOR}}
    loaders = {"output_dir": str(tmp_path / "out"), "raw_internal_path": "raw", "test": test}
    model = {"name": "UNet3D", "in_channels": 1, "out_channels": 1}
    config.write_text(json.dumps({"model": model, "device": "cpu", "loaders": loaders}))
    before = {p.name: p.read_bytes() for p in PLANTSEG.iterdir()}
    code, _, err = run_cli_here(
        capsys, "predict", "--config", str(config), "--model", str(PLANTSEG)
    )
    assert code == 0, err
    with h5py.File(tmp_path / "out" / "raw_predictions.h5") as f:
        got = f["predictions"][...]
    assert got.shape == expected.shape[1:]
    assert np.abs(got - expected[0]).max() < 1e-5
    assert {p.name: p.read_bytes() for p in PLANTSEG.iterdir()} == before  # read only


TENSOR = [{"name": "ToTensor", "expand_dims": True}]


def test_a_four_level_network_exports_and_loads_back(tmp_path, capsys):
    """A deep network's smallest valid input (min) exceeds the export's crop: the test tensor
    is padded to it, and a list f_maps (without num_levels) is written with its own levels, so
    the package builds, validates and loads as the same network."""
    import zipfile

    import numpy as np
    import yaml
    from cli_support import run_here
    from export_support import META
    from test_train_support import reference_config, tiny

    from unet_core.config import config_from_dict
    from unet_core.exchange.package_model import load_package_model
    from unet_core.training.run import train

    cfg = tiny(reference_config(tmp_path / "run"), iterations=1, every=1)
    cfg["model"].update(f_maps=[2, 4, 8, 16], num_groups=2)
    cfg["model"].pop("num_levels", None)
    torch.manual_seed(0)
    train(config_from_dict(cfg))
    meta = tmp_path / "meta.yaml"
    meta.write_text(yaml.safe_dump(META))
    package = tmp_path / "deep.zip"
    checkpoint = tmp_path / "run" / "best_checkpoint.pytorch"
    code, _, err = run_here(capsys, "export", str(checkpoint), "--format", "bioimageio",
                            "-o", str(package), "--metadata", str(meta), "--no-onnx")  # fmt: skip
    assert code == 0, err
    with zipfile.ZipFile(package) as z:
        z.extractall(tmp_path / "unpacked")
    rdf = yaml.safe_load((tmp_path / "unpacked" / "rdf.yaml").read_text())
    test_input = np.load(tmp_path / "unpacked" / rdf["inputs"][0]["test_tensor"]["source"])
    sizes = [a["size"]["min"] for a in rdf["inputs"][0]["axes"] if a["type"] == "space"]
    assert min(sizes) > 64  # deeper than the 32x64x64 crop
    assert all(n >= m for n, m in zip(test_input.shape[2:], sizes)), (test_input.shape, sizes)
    kwargs = rdf["weights"]["pytorch_state_dict"]["architecture"]["kwargs"]
    assert kwargs["f_maps"] == [2, 4, 8, 16] and kwargs["num_levels"] == 4
    model = load_package_model(package)
    assert len(model.encoders) == 4
    # packages exported before the fix paired the list with the default num_levels
    kwargs["num_levels"] = 5
    (tmp_path / "unpacked" / "rdf.yaml").write_text(yaml.safe_dump(rdf))
    assert len(load_package_model(tmp_path / "unpacked" / "rdf.yaml").encoders) == 4
