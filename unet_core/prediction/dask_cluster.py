"""The Dask cluster of a distributed run: joining a scheduler or starting a LocalCluster, and
what to tell the user when a block keeps killing its workers (usually: out of memory)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from unet_core.config.schema import DistributedConfig
from unet_core.errors import ConfigError, DataError


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
            memory_limit=dist.memory_limit if dist.memory_limit is not None else "auto",
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        yield client


def worker_memory(client: Any) -> str:
    """The workers' memory limit as Dask states it ("1.00 GiB", "none"); ask while they run."""
    from dask.utils import format_bytes

    try:
        workers = client.scheduler_info()["workers"].values()
    except Exception:  # noqa: BLE001 - the scheduler may be gone by now; the message stays
        return "unknown"
    limits = [w.get("memory_limit") for w in workers]
    if not limits:
        return "unknown (no worker connected)"
    sizes = sorted(int(v) for v in limits if v)
    if not sizes:
        return "none (unlimited)"
    return format_bytes(sizes[0]) + ("" if len(sizes) == 1 else f" to {format_bytes(sizes[-1])}")


def killed_worker_error(
    exc: BaseException, blocks: dict[str, Any], file: str, limit: str, partial: str
) -> DataError:
    """One paragraph for a block that killed its workers again and again (Dask's
    KilledWorker): which block, the memory limit, how to give it more room."""
    import dask

    key = getattr(exc, "task", None) or next((k for k in blocks if k in str(exc)), "")
    where = blocks.get(str(key))
    block = f"Block {where}" if where else "A block"
    tries = int(dask.config.get("distributed.scheduler.allowed-failures", 3)) + 1
    return DataError(
        f"{block} of {file} killed the Dask worker running it {tries} time(s) in a row "
        "(Dask then gives up on it); almost always it needs more memory "
        f"than a worker may use (the workers' memory limit is {limit}; Dask restarts a worker "
        "that goes above 95 % of it). Raise the limit (distributed.memory_limit, e.g. --set "
        "distributed.memory_limit=8GB, or the workers' --memory-limit / job memory on your "
        "cluster) or make each task smaller (distributed.block_shape, predictor.batch_size, "
        "a smaller patch), then run the same command again: the finished blocks in "
        f"{partial} are kept and skipped. Nothing was written under the final output name."
    )
