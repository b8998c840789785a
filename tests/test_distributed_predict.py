"""Prediction on a real Dask LocalCluster of 2 worker processes: equal to one process,
resumed after the client is killed, correct after a worker is SIGKILLed, clear errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
import zarr
from predict_support import config, read, save_weights, tiny_unet

from unet_core.errors import ConfigError, DataError
from unet_core.prediction.run import run_prediction

distributed = pytest.importorskip("distributed")

LAZY = {"name": "LazyPredictor", "chunks": [4, 8, 8]}
POST = {"name": "ConnectedComponents", "threshold": 0.5}
SHAPE = (16, 32, 40)  # 2 x 2 x 3 blocks of (8, 16, 16)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Input (HDF5 chunks unlike the blocks), checkpoint and the single-process output."""
    tmp = tmp_path_factory.mktemp("dist")
    raw = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    h5 = tmp / "vol.h5"
    with h5py.File(h5, "w") as f:
        f.create_dataset("raw", data=raw, chunks=(5, 7, 9))  # not aligned to the (8,16,16) blocks
    model, spec = tiny_unet()
    ckpt = save_weights(model, tmp / "m.pytorch")
    (single,) = run_prediction(
        config(
            spec,
            ckpt,
            [h5],
            tmp / "single",
            dataset="LazyHDF5Dataset",
            predictor=LAZY,
            postprocessor=POST,
        )
    )
    return {
        "tmp": tmp,
        "h5": h5,
        "spec": spec,
        "ckpt": ckpt,
        "single": read(single.path),
        "labels": read(single.path, "segmentation"),
    }


def _cfg(case, out: Path, scheduler: str, **dist):
    return config(
        case["spec"],
        case["ckpt"],
        [case["h5"]],
        out,
        dataset="LazyHDF5Dataset",
        predictor={**LAZY, "output_format": "zarr"},
        postprocessor=POST,
        distributed={"scheduler": scheduler, **dist},
    )


def _result(path: str | Path) -> np.ndarray:
    return zarr.open(str(path), mode="r")["predictions"][...]


def _counts(address: str) -> list[dict[str, int]]:
    from unet_core.prediction import dask_blocks

    with distributed.Client(address) as client:
        return list(client.run(lambda: dict(dask_blocks.COUNTS)).values())


def test_distributed_equals_single_process(cluster, case, tmp_path):
    (written,) = run_prediction(_cfg(case, tmp_path, cluster.scheduler_address))
    assert written.stats["blocks"] == 12 and written.stats["skipped_blocks"] == 0
    counts = _counts(cluster.scheduler_address)
    assert sum(c["blocks"] for c in counts) == 12  # 12 blocks, the model loaded once each
    assert all(c["loads"] == (1 if c["blocks"] else 0) for c in counts)
    np.testing.assert_allclose(_result(written.path), case["single"], atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["vol_predictions.ome.zarr"]
    labels = zarr.open(written.path, mode="r")["labels/segmentation/0"][...]
    assert labels.max() > 1  # several objects, labelled block-wise like one process does
    np.testing.assert_array_equal(labels, case["labels"])
    # read back like the single-process output: the input it came from is recorded
    source = zarr.open(written.path, mode="r")["predictions"].attrs["unet_source"]
    assert source == os.path.realpath(written.source)


def _marked(partial: Path) -> int:
    try:
        return int(zarr.open(str(partial), mode="r")["_unet_blocks"][...].sum())
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def test_worker_killed_mid_run_is_retried(cluster, case, tmp_path):
    client = distributed.Client(cluster)
    pids = list(client.run(os.getpid).values())
    partial = tmp_path / ".vol_predictions.ome.zarr.partial"
    at_kill: list[int] = []

    def kill_one() -> None:
        deadline = time.monotonic() + 60
        while _marked(partial) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(pids[0], signal.SIGKILL)
        at_kill.append(_marked(partial))

    killer = threading.Thread(target=kill_one)
    killer.start()
    (written,) = run_prediction(_cfg(case, tmp_path, cluster.scheduler_address))
    killer.join()
    assert at_kill and at_kill[0] < 12, "the worker was not killed mid-run"
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)
    np.testing.assert_allclose(_result(written.path), case["single"], atol=1e-6)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests
    client.close()


CHILD = """
import sys
sys.argv = ["unet", "predict", "--config", sys.argv[1]]
from unet_core.cli.main import main
main()
"""


def test_client_killed_then_rerun_finishes_only_missing_blocks(cluster, case, tmp_path):
    cfg_path = tmp_path / "cfg.yml"
    out = tmp_path / "out"
    cfg_path.write_text(yaml.safe_dump(_cfg(case, out, cluster.scheduler_address)))
    partial = out / ".vol_predictions.ome.zarr.partial"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(cfg_path)])
    deadline = time.monotonic() + 120
    while _marked(partial) < 1 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = _marked(partial)
    assert 1 <= done_before < 12, "the client was not killed mid-run"
    assert not (out / "vol_predictions.ome.zarr").exists()
    rerun = subprocess.run(
        [sys.executable, "-c", CHILD, str(cfg_path)], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    skipped = int(rerun.stderr.split(" of 12 blocks already finished")[0].split()[-1])
    assert skipped >= done_before
    assert "Dask dashboard: http" in rerun.stderr
    assert "vol_predictions.ome.zarr: 12/12 blocks" in rerun.stderr  # plain lines, no TTY
    np.testing.assert_allclose(_result(out / "vol_predictions.ome.zarr"), case["single"], atol=1e-6)
    assert not partial.exists()


def test_unanswering_scheduler_is_one_paragraph_and_writes_nothing(case, tmp_path):
    cfg = _cfg(case, tmp_path / "out", "tcp://127.0.0.1:9", connect_timeout=1)
    with pytest.raises(ConfigError, match="no Dask scheduler answered at 'tcp://127.0.0.1:9'"):
        run_prediction(cfg)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_output_format_without_concurrent_writes_is_refused(case, tmp_path):
    cfg = _cfg(case, tmp_path / "out", "tcp://127.0.0.1:9")
    cfg["predictor"]["output_format"] = "hdf5"
    with pytest.raises(ConfigError, match="output_format: zarr"):
        run_prediction(cfg)


def test_zarr_without_the_raw_array_is_one_paragraph_and_writes_nothing(case, tmp_path):
    group = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    group.create_array("other", shape=(8, 16, 16), dtype="float32")
    cfg = _cfg(case, tmp_path / "out", "tcp://127.0.0.1:9")
    cfg["loaders"]["test"]["file_paths"] = [str(tmp_path / "in.zarr")]
    with pytest.raises(DataError, match=r"'raw' \(loaders.raw_internal_path\).*'other'"):
        run_prediction(cfg)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_partial_output_of_another_run_is_started_over(tmp_path):
    from unet_core import formats
    from unet_core.prediction.dask_run import _open_partial

    tmp, final = tmp_path / ".x.ome.zarr.partial", tmp_path / "x.ome.zarr"
    writer, marks = _open_partial(formats.get("zarr"), tmp, final, (2, 2, 2), "run-a")
    marks[0, 1, 1] = 1
    writer.close()
    writer, marks = _open_partial(formats.get("zarr"), tmp, final, (2, 2, 2), "run-a")
    assert int(marks[...].sum()) == 1  # same run: resumed
    writer.close()
    writer, marks = _open_partial(formats.get("zarr"), tmp, final, (2, 2, 2), "run-b")
    assert int(marks[...].sum()) == 0 and marks.attrs["fingerprint"] == "run-b"


@pytest.mark.parametrize("connectivity,min_size", [(1, 0), (3, 4)])
def test_connected_components_on_dask_equal_whole_volume_labelling(
    cluster, tmp_path, connectivity, min_size
):
    from skimage.measure import label

    from unet_plugins.postprocessors.instances import ConnectedComponents, remove_small

    rng = np.random.default_rng(5)
    probs = rng.random((1, 12, 20, 22), dtype=np.float32) ** 8  # ~8 % foreground
    source = zarr.open_array(
        str(tmp_path / "p.zarr"), mode="w", shape=probs.shape, chunks=(1, 4, 8, 8), dtype="float32"
    )
    source[...] = probs
    out = zarr.open_array(
        str(tmp_path / "l.zarr"), mode="w", shape=probs.shape[1:], chunks=(4, 8, 8), dtype="uint32"
    )
    from unet_core.prediction.dask_blocks import BlockReader

    post = ConnectedComponents(
        ConnectedComponents.Config(threshold=0.5, connectivity=connectivity, min_size=min_size)
    )
    with distributed.Client(cluster) as client:
        n = post.segment_dask(
            client,
            BlockReader(source, 1.0),
            probs.shape[1:],
            (4, 8, 8),
            lambda n: out.__setitem__,
            scratch_dir=str(tmp_path),
        )
    expected = remove_small(label(probs[0] > 0.5, connectivity=connectivity), min_size)
    assert n == len(np.unique(expected)) - 1 and n > 5
    np.testing.assert_array_equal(out[...], expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.zarr", "p.zarr"]  # no scratch left
