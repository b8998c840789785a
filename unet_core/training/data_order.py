"""Making an epoch's data order and augmentation reproducible, so a resumed run continues exactly.

An epoch's batches are fixed by the generator states at its start: the global torch RNG (or the
loader's own ``generator``) gives the shuffle permutation and the workers' base seed, and each
worker's RNG gives every sample's augmentation seed. Capturing those states at the start of an
epoch and re-reading the batches already used lets a resumed run continue with the very next
batch. That needs workers started afresh each epoch (seeded from the epoch's state): persistent
workers carry their RNG across epochs, which no checkpoint can capture, so the train loader is
rebuilt without them (a fork per epoch; the val loader keeps its workers).
"""

from __future__ import annotations

from typing import Any

from unet_core.training.snapshots import generator_state


def capture(loader: Any) -> dict[str, Any]:
    """The generator states that fix an epoch's data order and worker seeds."""
    import torch

    sampler = getattr(loader, "sampler", None)
    return {
        "torch": torch.get_rng_state(),
        "loader_generator": generator_state(getattr(loader, "generator", None)),
        "sampler_generator": generator_state(getattr(sampler, "generator", None)),
    }


def restore(loader: Any, state: dict[str, Any]) -> None:
    """Put back what :func:`capture` saw, so ``iter(loader)`` repeats that epoch."""
    import torch

    torch.set_rng_state(state["torch"])
    owners = ((loader, "loader_generator"), (getattr(loader, "sampler", None), "sampler_generator"))
    for owner, key in owners:
        gen = getattr(owner, "generator", None)
        if gen is not None and state.get(key) is not None:
            gen.set_state(state[key])


def without_persistent_workers(loader: Any) -> Any:
    """The same DataLoader (dataset, sampler, batching, seeds) with per-epoch workers."""
    from torch.utils.data import DataLoader

    if not isinstance(loader, DataLoader) or not loader.persistent_workers:
        return loader
    kwargs: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "prefetch_factor": loader.prefetch_factor,
        "persistent_workers": False,
    }
    if loader.batch_size is None:  # built from a batch_sampler
        return DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, **kwargs)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=loader.sampler,
        drop_last=loader.drop_last,
        **kwargs,
    )
