"""Prediction spread over a Dask cluster, resumable, into a chunked output (zarr).

The output is cut into blocks of whole output chunks; one task per block forwards the patches
that touch it and writes its chunks directly into the store
(:mod:`unet_core.prediction.dask_blocks`). The output is written under a fixed temporary name
beside the final one (``.<name>.partial``) with a per-block "finished" array; running the
same command again after a kill (of the client or of workers) reuses it and computes only
the missing blocks. When every block is finished the folder is renamed to the final name, so
nothing incomplete ever sits there. A worker lost mid-block is retried by Dask: writes of a
block are idempotent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from unet_core import formats
from unet_core.config.schema import DistributedConfig, ExperimentConfig
from unet_core.errors import ConfigError, DataError
from unet_core.interfaces import BlockwisePostprocessor
from unet_core.io.atomic import durable_replace
from unet_core.prediction.dask_blocks import (
    BLOCKS_ARRAY,
    BlockReader,
    BlockWriter,
    block_grid,
    patches_per_block,
    predict_block,
)
from unet_core.prediction.output import Written, check_writable

log = logging.getLogger(__name__)

#: Output chunk (Z,Y,X) when predictor.chunks is not set (~2 MB of float32).
DEFAULT_CHUNKS = (32, 128, 128)
#: Times Dask reruns a block whose worker died (writes are idempotent).
BLOCK_RETRIES = 3


@contextmanager
def dask_client(dist: DistributedConfig) -> Iterator[Any]:
    """A client of ``dist.scheduler``, or of a LocalCluster of ``dist.workers`` processes."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            "distributed: prediction on Dask needs dask.distributed: pip install "
            "'unet-core[distributed]', or remove the distributed section."
        ) from None
    if dist.scheduler:
        try:
            client = Client(dist.scheduler, timeout=dist.connect_timeout)  # type: ignore[no-untyped-call]
        except (OSError, TimeoutError) as exc:
            raise ConfigError(
                f"distributed.scheduler: no Dask scheduler answered at {dist.scheduler!r} "
                f"within {dist.connect_timeout:g} s ({type(exc).__name__}: {exc}). Start one "
                "(dask-scheduler, dask-jobqueue, dask-cuda) and pass its address, or leave "
                "--scheduler out to run a LocalCluster on this machine. Nothing was written."
            ) from None
        with client:
            yield client
        return
    with (
        LocalCluster(  # type: ignore[no-untyped-call]
            n_workers=dist.workers,
            threads_per_worker=dist.threads_per_worker,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def model_digest(model: Any) -> str:
    """sha256 of the model's weights: which model wrote an output (resume must match)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_predictor(predictor: Any, fmt: Any, cfg: ExperimentConfig) -> None:
    needs = (
        "patches",
        "channels",
        "settings",
        "output_file",
        "output_layout",
        "array_attrs",
        "config",
    )
    if not all(hasattr(predictor, n) for n in needs):
        raise ConfigError(
            f"distributed: the predictor {cfg.predictor.get('name')} cannot run block by block "
            "on Dask (it has no patches/settings); use StandardPredictor or LazyPredictor, or "
            "remove the distributed section."
        )
    if not getattr(fmt, "concurrent_writes", False):
        raise ConfigError(
            f"distributed: predictor.output_format {predictor.config.output_format!r} cannot "
            "take chunks written by many processes at once; set predictor.output_format: zarr "
            "(--set predictor.output_format=zarr)."
        )
    if cfg.postprocessor is not None and not isinstance(
        predictor.postprocessor, BlockwisePostprocessor
    ):
        raise ConfigError(
            f"distributed: the postprocessor {cfg.postprocessor.get('name')} segments the whole "
            "volume in memory, which a distributed run is meant to avoid; use a block-wise one "
            "(ConnectedComponents) or segment the output separately."
        )


def run_distributed(
    cfg: ExperimentConfig, model: Any, device: Any, *, overwrite: bool = False
) -> list[Written]:
    """Predict every test file on Dask; returns the completed outputs."""
    from unet_core.prediction.building import build_predictor, test_datasets

    assert cfg.distributed is not None
    predictor = build_predictor(cfg, model, device, overwrite=overwrite)
    assert cfg.predictor is not None  # the loader fills in the default predictor
    pcfg: Any = cfg.predictor.config
    fmt = formats.for_output(getattr(pcfg, "output_format", "hdf5"))
    _check_predictor(predictor, fmt, cfg)
    if getattr(pcfg, "performance_metric", None):
        log.warning("predictor.performance_metric is not computed on Dask; run unet evaluate.")
    datasets = list(test_datasets(cfg, predictor))
    eager = [d for d in datasets if getattr(d, "lazy", True) is False]
    if eager:
        log.warning(
            "loaders.dataset %s loads the whole volume in every Dask worker; use "
            "LazyHDF5Dataset so that each block reads only its patches.",
            type(eager[0]).__name__,
        )
    settings = json.dumps(pcfg.model_dump(mode="json"), sort_keys=True, default=str)
    digest = hashlib.sha256((model_digest(model) + settings).encode()).hexdigest()
    written = []
    with dask_client(cfg.distributed) as client:
        log.info("Dask dashboard: %s", client.dashboard_link)
        print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        shared = client.scatter(predictor, broadcast=True, hash=False)
        for dataset in datasets:
            written.append(
                _predict_file(client, shared, predictor, dataset, fmt, cfg.distributed, digest)
            )
    return written


def _geometry(
    predictor: Any, volume: tuple[int, ...], dist: DistributedConfig
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(chunks, block): the block a whole number of chunks on every axis."""
    chunks = tuple(
        min(int(c), v) for c, v in zip(predictor.config.chunks or DEFAULT_CHUNKS, volume)
    )
    if dist.block_shape is None:
        return chunks, tuple(min(2 * c, v) for c, v in zip(chunks, volume))
    block = tuple(min(int(b), v) for b, v in zip(dist.block_shape, volume))
    for b, c, v in zip(block, chunks, volume):
        if b % c and b != v:
            raise ConfigError(
                f"distributed.block_shape {list(dist.block_shape)} is not a multiple of the "
                f"output chunks {list(chunks)} (predictor.chunks): two tasks would write one "
                "chunk. Make every entry a multiple of the chunk entry."
            )
    return chunks, block


def _fingerprint(predictor: Any, dataset: Any, digest: str, block: tuple[int, ...]) -> str:
    """What must match for a partial output to be resumed."""
    slices = [[(s.start, s.stop) for s in index] for index in dataset.raw_slices]
    text = json.dumps(
        [
            digest,
            os.path.realpath(str(dataset.file_path)),
            predictor.config.model_dump(mode="json"),
            slices,
            list(dataset.halo_shape),
            list(block),
        ],
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _partial_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.partial")


def _input_info(dataset: Any) -> Any:
    from unet_core.io import Source

    raw = dataset.names["raw"] if hasattr(dataset, "names") else "raw"
    raw = raw if isinstance(raw, str) else raw[0]
    with Source(str(dataset.file_path), raw_name=raw) as src:
        return src.info(raw)


def _open_partial(fmt: Any, tmp: Path, final: Path, grid: tuple[int, ...], fp: str) -> Any:
    """(writer, marks): the partial output of this very run if there is one, else a new one."""
    resumable = bool(getattr(fmt, "resumable", False))
    if tmp.exists() and not resumable:
        shutil.rmtree(tmp, ignore_errors=True)
    if tmp.exists():
        writer = fmt.create(str(tmp), str(final), resume=True)
        marks = writer.create(BLOCKS_ARRAY, grid, np.uint8, chunks=(1, 1, 1), compression="none")
        if marks.attrs.get("fingerprint") == fp:
            return writer, marks
        log.info("%s is from another run (model, input or settings differ); starting over.", tmp)
        writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
    writer = fmt.create(str(tmp), str(final), **({"resume": True} if resumable else {}))
    marks = writer.create(
        BLOCKS_ARRAY, grid, np.uint8, chunks=(1, 1, 1), compression="none", attrs={}
    )
    marks.attrs["fingerprint"] = fp
    return writer, marks


def _predict_file(
    client: Any,
    shared: Any,
    predictor: Any,
    dataset: Any,
    fmt: Any,
    dist: DistributedConfig,
    digest: str,
) -> Written:
    import time

    from unet_core.prediction.dask_progress import track

    cfg = predictor.config
    final = Path(predictor.output_file(dataset))
    check_writable(final, predictor.overwrite)
    volume = tuple(int(v) for v in dataset.volume_shape)
    chunks, block = _geometry(predictor, volume, dist)
    grid = block_grid(volume, block)
    tmp = _partial_path(final)
    writer, marks = _open_partial(
        fmt, tmp, final, grid, _fingerprint(predictor, dataset, digest, block)
    )
    info = _input_info(dataset)
    shape, dtype = predictor.output_layout(volume)
    out = writer.create(
        cfg.output_dataset,
        shape,
        dtype,
        chunks=chunks,
        compression=cfg.compression,
        info=info.with_axes(len(shape)),
        attrs=predictor.array_attrs(dtype, cfg.output_dataset, str(dataset.file_path)),
    )
    finished = np.asarray(marks[...]).astype(bool)
    indices = [tuple(s)[-3:] for s in dataset.raw_slices]
    touching = patches_per_block(indices, block)
    todo = [ids for ids in np.ndindex(*grid) if not finished[ids]]
    skipped = int(finished.sum())
    if skipped:
        log.info(
            "%s: %d of %d blocks already finished (skipped).", final, skipped, len(finished.flat)
        )
        print(
            f"{final.name}: {skipped} of {finished.size} blocks already finished, skipped",
            file=sys.stderr,
        )
    write = BlockWriter(cfg.output_dtype, cfg.save_segmentation)
    start = time.perf_counter()
    shared_ds = client.scatter(dataset, broadcast=True, hash=False)
    futures = [
        client.submit(
            predict_block,
            shared,
            digest,
            shared_ds,
            out,
            marks,
            ids,
            block,
            touching.get(ids, []),
            write,
            key=f"unet-block-{os.getpid()}-{abs(hash(str(final)))}-{'-'.join(map(str, ids))}",
            pure=False,
            retries=BLOCK_RETRIES,
        )
        for ids in todo
    ]
    try:
        track(futures, total=finished.size, done=skipped, what=final.name)
    except BaseException as exc:
        client.cancel(futures)
        writer.close()  # the partial output stays for the next run to finish
        if type(exc).__name__ == "KilledWorker":
            raise DataError(
                f"A block of {dataset.file_path} killed {BLOCK_RETRIES + 1} Dask workers in a "
                f"row ({exc}); usually a worker ran out of memory. Give the workers more memory "
                "(LocalCluster memory_limit, your cluster's job size) or make blocks and batches "
                "smaller (distributed.block_shape, predictor.batch_size), then run the same "
                f"command again: the finished blocks in {tmp} are kept and skipped."
            ) from None
        raise
    if not bool(np.asarray(marks[...]).all()):
        writer.close()
        raise DataError(
            f"Distributed prediction of {dataset.file_path} ended with unfinished blocks; its "
            f"partial output {tmp} is kept. Run the same command again to finish it."
        )
    names = [cfg.output_dataset]
    if predictor.postprocessor is not None:
        names.append(_segment(predictor, writer, out, chunks, block, tmp, info, client))
    writer.close()
    _move_into_place(tmp, final, predictor.overwrite)
    seconds = time.perf_counter() - start
    stats = {
        "seconds": seconds,
        "blocks": int(finished.size),
        "skipped_blocks": skipped,
        "patches": len(indices),
    }
    return Written(str(final), names, None, stats, str(dataset.file_path))


def _segment(
    predictor: Any,
    writer: Any,
    source: Any,
    chunks: tuple[int, ...],
    block: tuple[int, ...],
    tmp: Path,
    info: Any,
    client: Any = None,
) -> str:
    """Instances of the finished prediction, written as ``segmentation`` (an NGFF label
    image in OME-Zarr): as Dask tasks where the postprocessor can (``segment_dask``), else
    block by block in this process (``segment_blocks``); both equal labelling the whole
    volume."""
    from unet_core.prediction.output import segmentation_dtype

    cfg = predictor.config
    scale = 1.0 / 255.0 if cfg.output_dtype == "uint8" and not cfg.save_segmentation else 1.0
    volume = tuple(int(v) for v in source.shape[-3:])
    read = BlockReader(source, scale)

    def open_output(n: int) -> Any:
        labels = writer.create(
            "segmentation",
            volume,
            segmentation_dtype(n),
            chunks=chunks,
            compression=cfg.compression,
            info=info.with_axes(3),
        )
        return labels.__setitem__

    post = predictor.postprocessor
    scratch = str(tmp.parent)
    if client is not None and hasattr(post, "segment_dask"):
        post.segment_dask(client, read, volume, block, open_output, scratch_dir=scratch)
    else:
        post.segment_blocks(read, volume, block, open_output, scratch_dir=scratch)
    return "segmentation"


def _move_into_place(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename the finished folder to ``final`` (replacing an old output only if allowed)."""
    check_writable(final, overwrite)
    durable_replace(tmp, final)
