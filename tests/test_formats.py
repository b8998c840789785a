"""Volume formats (unet.formats): chosen through the registry, voxel size carried to outputs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from predict_support import config, save_weights, tiny_unet

from unet_core import formats
from unet_core.engine.prediction import run_prediction
from unet_core.errors import DataError
from unet_core.io import Source

RAW_ONLY = [{"name": "ToTensor", "expand_dims": True}]


def test_the_registry_chooses_the_format_by_suffix_and_lists_every_suffix() -> None:
    assert {"hdf5", "tiff"} <= set(formats.names())
    assert formats.claim("/x/a.H5")[0] == "hdf5"
    assert formats.claim("/x/a.tiff")[0] == "tiff"
    assert formats.claim("/x/a.zarr") is None
    assert formats.suffixes()[:6] == (".h5", ".hdf", ".hdf5", ".hd5", ".tif", ".tiff")
    with pytest.raises(DataError, match=r"a\.zarr \(loaders.test.file_paths\).*hdf5 \(\.h5"):
        formats.for_path("/x/a.zarr", key="loaders.test.file_paths")


def _predict(tmp: Path, source: Path, predictor: dict) -> list:
    model, spec = tiny_unet(seed=1)
    tmp.mkdir(parents=True, exist_ok=True)
    ckpt = save_weights(model, tmp / "m.pytorch")
    cfg = config(spec, ckpt, [source], tmp / "out", predictor=predictor, raw_transforms=RAW_ONLY)
    return run_prediction(cfg)


@pytest.mark.parametrize("predictor", ["StandardPredictor", "LazyPredictor"])
def test_hdf5_voxel_size_reaches_hdf5_and_tiff_outputs(tmp_path: Path, predictor: str) -> None:
    raw = np.random.default_rng(0).normal(size=(10, 20, 24)).astype(np.float32)
    source = tmp_path / "vol.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("raw", data=raw).attrs["element_size_um"] = [0.5, 0.25, 0.125]
    with Source(str(source)) as src:
        assert src.info("raw").voxel_size == (0.5, 0.25, 0.125)

    (h5,) = _predict(tmp_path / "h5", source, {"name": predictor, "save_segmentation": True})
    with h5py.File(h5.path) as f:
        ds = f["predictions"]
        np.testing.assert_allclose(ds.attrs["element_size_um"], [0.5, 0.25, 0.125])
        assert ds.attrs["axes"] == "ZYX"
        labels = ds[...]

    # LazyPredictor used to refuse anything but HDF5; every format now takes the blocks
    (tif,) = _predict(tmp_path / "tif", source, {"name": predictor, "output_format": "tiff"})
    assert tif.path.endswith("vol_predictions.tif")
    with Source(tif.path, raw_name="predictions") as out:
        info = out.info("predictions")
        probs = out.volume("predictions", key="k").read()
    assert info.voxel_size == pytest.approx((0.5, 0.25, 0.125))
    assert probs.shape == (2, 10, 20, 24)
    np.testing.assert_array_equal(np.argmax(probs, axis=0), labels)


def test_imagej_tiff_spacing_reaches_the_hdf5_output(tmp_path: Path) -> None:
    raw = np.random.default_rng(1).normal(size=(10, 20, 24)).astype(np.float32)
    source = tmp_path / "stack_raw.tif"
    tifffile.imwrite(
        source,
        raw,
        imagej=True,
        resolution=(4.0, 5.0),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
    )
    (written,) = _predict(tmp_path, source, {"name": "StandardPredictor"})
    with h5py.File(written.path) as f:
        np.testing.assert_allclose(f["predictions"].attrs["element_size_um"], [2.0, 0.2, 0.25])
        assert f["predictions"].attrs["axes"] == "CZYX"


def test_an_unknown_output_format_is_a_config_error_naming_the_installed_ones() -> None:
    from unet_core import registry
    from unet_core.errors import ConfigError

    with pytest.raises(ConfigError, match="output_format.*'zarr' is not an installed.*hdf5"):
        registry.validate("predictors", {"name": "LazyPredictor", "output_format": "zarr"})


def test_preview_reads_a_tiff_output_and_its_segmentation(tmp_path: Path) -> None:
    """`unet predict --preview` drew HDF5 outputs only; it now reads any format's output."""
    from unet_core.engine.preview import write_preview

    raw = np.random.default_rng(2).normal(size=(10, 20, 24)).astype(np.float32)
    source = tmp_path / "vol.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("raw", data=raw)
    predictor = {"name": "StandardPredictor", "output_format": "tiff"}
    model, spec = tiny_unet(seed=1)
    ckpt = save_weights(model, tmp_path / "m.pytorch")
    cfg = config(
        spec,
        ckpt,
        [source],
        tmp_path / "out",
        predictor=predictor,
        raw_transforms=RAW_ONLY,
        postprocessor={"name": "ConnectedComponents", "threshold": 0.5},
    )
    (written,) = run_prediction(cfg)
    assert written.datasets == ["predictions", "segmentation"]
    png = write_preview(written.path, tmp_path / "p.png", source=str(source))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[1] > 3 * 4 * 80 - 10  # raw | predictions | labels


MEMORY: dict[str, np.ndarray] = {}


class _MemoryReader:
    def __init__(self, path: str) -> None:
        self.path = path

    def array(self, name: str, *, key: str, in_memory: bool = False) -> np.ndarray:
        if self.path not in MEMORY:
            raise DataError(f"{self.path} ({key}) is not in memory")
        return MEMORY[self.path]

    def info(self, name: str) -> formats.VolumeInfo:
        return formats.VolumeInfo((3.0, 1.0, 1.0))

    def names(self) -> list[str]:
        return ["raw"]

    def close(self) -> None:
        pass


class _MemoryFormat:
    """Arrays behind ``mem://`` URLs: a format claimed by scheme, registered at run time."""

    from unet_core.interfaces import ComponentConfig as Config

    suffixes = ()
    schemes = ("mem",)
    single_array = True

    def open(self, path: str, *, primary: str = "raw", key: str = "file_paths") -> _MemoryReader:
        return _MemoryReader(path)


def test_a_format_claimed_by_url_scheme_feeds_unet_predict(tmp_path: Path) -> None:
    from unet_core import predict_array, registry

    raw = np.random.default_rng(4).normal(size=(10, 20, 24)).astype(np.float32)
    MEMORY["mem://bucket/vol"] = raw
    registry.register("formats", "mem", _MemoryFormat)
    try:
        assert formats.claim("mem://bucket/vol")[0] == "mem"
        model, spec = tiny_unet(seed=3)
        ckpt = save_weights(model, tmp_path / "m.pytorch")
        cfg = config(spec, ckpt, [], tmp_path / "out", raw_transforms=RAW_ONLY)
        cfg["loaders"]["test"]["file_paths"] = ["mem://bucket/vol"]
        (written,) = run_prediction(cfg)
    finally:
        registry.default_registry.unregister("formats", "mem")
    assert written.path == str(tmp_path / "out" / "vol_predictions.h5")
    expected = predict_array(model, raw, patch=(8, 16, 16), stride=(5, 12, 12), halo=(2, 4, 4))
    with h5py.File(written.path) as f:
        np.testing.assert_allclose(f["predictions"][...], expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(f["predictions"].attrs["element_size_um"], [3.0, 1.0, 1.0])
