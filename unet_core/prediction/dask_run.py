"""Prediction spread over a Dask cluster, resumable, into a chunked output (zarr).

The output is cut into blocks of whole output chunks; one task per block forwards the patches
that touch it and writes its chunks directly into the store
(:mod:`unet_core.prediction.dask_blocks`). The output is written under a fixed temporary name
beside the final one (``.<name>.partial``) with a per-block "finished" array; running the
same command again after a kill (of the client or of workers) reuses it and computes only
the missing blocks. When every block is finished the folder is renamed to the final name, so
nothing incomplete ever sits there. A worker lost mid-block is retried by Dask: writes of a
block are idempotent.

Any predictor that declares the ``blockwise`` capability takes part, through the members of
:class:`unet_core.interfaces.BlockwisePredictor`; the postprocessor and the output pyramid
run on the same cluster afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from unet_core import formats
from unet_core.config.schema import DistributedConfig, ExperimentConfig
from unet_core.contracts import declared
from unet_core.errors import ConfigError, DataError
from unet_core.interfaces import BlockwisePostprocessor
from unet_core.io.atomic import durable_replace
from unet_core.prediction.dask_blocks import (
    BLOCKS_ARRAY,
    BlockReader,
    block_grid,
    block_index,
    patches_per_block,
    predict_block,
)
from unet_core.prediction.dask_cluster import dask_client, killed_worker_error, worker_memory
from unet_core.prediction.output import Written, check_writable
from unet_core.prediction.output_files import add_pyramid, check_pyramid

log = logging.getLogger(__name__)

#: Output chunk (Z,Y,X) when predictor.chunks is not set (~2 MB of float32).
DEFAULT_CHUNKS = (32, 128, 128)
#: Times Dask reruns a block whose worker died (writes are idempotent).
BLOCK_RETRIES = 3


def model_digest(model: Any) -> str:
    """sha256 of the model's weights: which model wrote an output (resume must match)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_predictor(predictor: Any, cfg: ExperimentConfig) -> Any:
    """Refuse, before anything is written, what cannot run block by block on Dask; returns
    the output format."""
    assert cfg.predictor is not None
    if not declared("predictors", predictor, "blockwise"):
        raise ConfigError(
            f"distributed: the predictor {cfg.predictor.name} cannot run block by block on "
            "Dask: it does not declare the `blockwise` capability (the contract "
            "unet_core.interfaces.BlockwisePredictor). Use StandardPredictor or LazyPredictor, "
            "or remove the distributed section to predict in this process."
        )
    fmt = formats.for_output(predictor.output_format)
    if not getattr(fmt, "concurrent_writes", False):
        raise ConfigError(
            f"distributed: predictor.output_format {predictor.output_format!r} cannot "
            "take chunks written by many processes at once; set predictor.output_format: zarr "
            "(--set predictor.output_format=zarr)."
        )
    post = predictor.postprocessor
    if post is None or declared("postprocessors", post, "segment_dask") is not None:
        return fmt
    if not isinstance(post, BlockwisePostprocessor):
        assert cfg.postprocessor is not None
        raise ConfigError(
            f"distributed: the postprocessor {cfg.postprocessor.name} segments the whole "
            "volume in memory, which a distributed run is meant to avoid; use one that runs "
            "block-wise (ConnectedComponents, SeededWatershed) or segment the output separately."
        )
    return fmt


def run_distributed(
    cfg: ExperimentConfig, model: Any, device: Any, *, overwrite: bool = False
) -> list[Written]:
    """Predict every test file on Dask; returns the completed outputs."""
    from unet_core.prediction.building import build_predictor, test_datasets

    assert cfg.distributed is not None
    predictor: Any = build_predictor(cfg, model, device, overwrite=overwrite)
    assert cfg.predictor is not None  # the loader fills in the default predictor
    pcfg: Any = cfg.predictor.config
    fmt = _check_predictor(predictor, cfg)
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
            run = _FileRun(client, predictor, dataset, fmt, cfg.distributed, digest, settings)
            written.append(run.predict(shared))
    return written


def _geometry(
    layout: Any, volume: tuple[int, ...], dist: DistributedConfig
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(chunks, block): the block a whole number of chunks on every axis."""
    chunks = tuple(min(int(c), v) for c, v in zip(layout.chunks or DEFAULT_CHUNKS, volume))
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


def _fingerprint(settings: str, dataset: Any, digest: str, block: tuple[int, ...]) -> str:
    """What must match for a partial output to be resumed."""
    slices = [[(s.start, s.stop) for s in index] for index in dataset.raw_slices]
    text = json.dumps(
        [
            digest,
            os.path.realpath(str(dataset.file_path)),
            settings,
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


class _FileRun:
    """One input file predicted on the cluster into its partial output, then moved into
    place: blocks as tasks, the postprocessor and the pyramid on the same cluster."""

    def __init__(
        self,
        client: Any,
        predictor: Any,
        dataset: Any,
        fmt: Any,
        dist: DistributedConfig,
        digest: str,
        settings: str,
    ) -> None:
        self.client, self.predictor, self.dataset = client, predictor, dataset
        self.final = Path(predictor.output_file(dataset))
        check_writable(self.final, predictor.overwrite)
        self.volume = tuple(int(v) for v in dataset.volume_shape)
        self.layout = predictor.block_output(self.volume, str(dataset.file_path))
        check_pyramid(predictor.output_format, self.layout.pyramid_levels)
        self.chunks, self.block = _geometry(self.layout, self.volume, dist)
        self.grid = block_grid(self.volume, self.block)
        self.tmp = _partial_path(self.final)
        fingerprint = _fingerprint(settings, dataset, digest, self.block)
        self.writer, self.marks = _open_partial(fmt, self.tmp, self.final, self.grid, fingerprint)
        self.digest = digest

    def predict(self, shared: Any) -> Written:
        from unet_core.prediction.dask_progress import track

        client, layout, dataset = self.client, self.layout, self.dataset
        info = _input_info(dataset)
        out = self.writer.create(
            layout.name,
            layout.shape,
            layout.dtype,
            chunks=self.chunks,
            compression=layout.compression,
            info=info.with_axes(len(layout.shape)),
            attrs=layout.attrs,
        )
        finished = np.asarray(self.marks[...]).astype(bool)
        indices = [tuple(s)[-3:] for s in dataset.raw_slices]
        touching = patches_per_block(indices, self.block)
        todo = [ids for ids in np.ndindex(*self.grid) if not finished[ids]]
        skipped = int(finished.sum())
        if skipped:
            log.info("%s: %d of %d blocks already finished (skipped).", self.final, skipped,
                     finished.size)  # fmt: skip
            print(
                f"{self.final.name}: {skipped} of {finished.size} blocks already finished, skipped",
                file=sys.stderr,
            )
        start = time.perf_counter()
        limit = worker_memory(client)  # now: a worker killed later no longer says it
        shared_ds = client.scatter(dataset, broadcast=True, hash=False)
        run_key = f"{os.getpid()}-{abs(hash(str(self.final)))}"
        keys = {f"unet-block-{run_key}-{'-'.join(map(str, ids))}": ids for ids in todo}
        futures = [
            client.submit(
                predict_block,
                shared,
                self.digest,
                shared_ds,
                out,
                self.marks,
                ids,
                self.block,
                touching.get(ids, []),
                layout.blending,
                key=key,
                pure=False,
                retries=BLOCK_RETRIES,
            )
            for key, ids in keys.items()
        ]
        try:
            track(futures, total=finished.size, done=skipped, what=self.final.name)
        except BaseException as exc:
            client.cancel(futures)
            self.writer.close()  # the partial output stays for the next run to finish
            if type(exc).__name__ == "KilledWorker":
                where = {
                    k: f"{ids} (voxels {_voxels(block_index(ids, self.block, self.volume))})"
                    for k, ids in keys.items()
                }
                raise killed_worker_error(
                    exc, where, str(dataset.file_path), limit, str(self.tmp)
                ) from None
            raise
        if not bool(np.asarray(self.marks[...]).all()):
            self.writer.close()
            raise DataError(
                f"Distributed prediction of {dataset.file_path} ended with unfinished blocks; "
                f"its partial output {self.tmp} is kept. Run the same command again to finish."
            )
        names = [layout.name]
        if self.predictor.postprocessor is not None:
            names.append(self._segment(out, info))
        self._pyramids(names)
        self.writer.close()
        _move_into_place(self.tmp, self.final, self.predictor.overwrite)
        stats = {
            "seconds": time.perf_counter() - start,
            "blocks": int(finished.size),
            "skipped_blocks": skipped,
            "patches": len(indices),
        }
        return Written(str(self.final), names, None, stats, str(dataset.file_path))

    def _pyramids(self, names: list[str]) -> None:
        """The coarser levels, each level's boxes as tasks (a level reads the one above)."""
        client = self.client

        def map_boxes(fill: Any, boxes: list[Any]) -> None:
            client.gather(client.map(fill, boxes, pure=False, retries=BLOCK_RETRIES))

        for name in names:
            labels = name == "segmentation" or (name == self.layout.name and self.layout.labels)
            add_pyramid(
                self.writer, name, self.layout.pyramid_levels, labels=labels, map_boxes=map_boxes
            )

    def _segment(self, source: Any, info: Any) -> str:
        """Instances of the finished prediction, written as ``segmentation`` (an NGFF label
        image in OME-Zarr): as Dask tasks where the postprocessor can (``segment_dask``),
        else block by block in this process (``segment_blocks``)."""
        from unet_core.prediction.output import segmentation_dtype

        read = BlockReader(source, self.layout.scale)
        writer, chunks, compression = self.writer, self.chunks, self.layout.compression

        def open_output(n: int) -> Any:
            labels = writer.create(
                "segmentation",
                self.volume,
                segmentation_dtype(n),
                chunks=chunks,
                compression=compression,
                info=info.with_axes(3),
            )
            return labels.__setitem__

        post = self.predictor.postprocessor
        scratch = str(self.tmp.parent)
        segment_dask = declared("postprocessors", post, "segment_dask")
        if segment_dask is not None:
            segment_dask(self.client, read, self.volume, self.block, open_output,
                         scratch_dir=scratch)  # fmt: skip
        else:
            post.segment_blocks(read, self.volume, self.block, open_output, scratch_dir=scratch)
        return "segmentation"


def _voxels(index: tuple[slice, ...]) -> str:
    return ", ".join(f"{s.start}:{s.stop}" for s in index)


def _move_into_place(tmp: Path, final: Path, overwrite: bool) -> None:
    """Rename the finished folder to ``final`` (replacing an old output only if allowed)."""
    check_writable(final, overwrite)
    durable_replace(tmp, final)
