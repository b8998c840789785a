"""What a component of each kind looks like.

A component is any object registered under an entry-point group (or with
:func:`unet_core.registry.register`) that carries a Pydantic v2 ``Config`` model.
``registry.create(kind, spec, **context)`` validates ``spec`` with ``Config`` and then builds it
with ``component.from_config(config, **context)`` when that classmethod exists, otherwise with
``component(**config.model_dump(), **context)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    import torch

Kind = Literal[
    "models",
    "losses",
    "metrics",
    "datasets",
    "transforms",
    "slice_builders",
    "predictors",
    "postprocessors",
    "optimizers",
    "lr_schedulers",
]

from unet_core.kinds import HOOKS_GROUP, KINDS, singular  # noqa: E402,F401 - re-exported


class ComponentConfig(BaseModel):
    """Base for every component's ``Config``: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@runtime_checkable
class Component(Protocol):
    """Anything the registry can build: it declares its parameters as a Pydantic model."""

    Config: ClassVar[type[BaseModel]]


class Model(Protocol):
    """A network. ``forward`` returns logits; ``final_activation`` maps them to the output.

    ``is_segmentation`` says whether eval-mode outputs are probabilities; ``spatial_dims`` is
    2 or 3 (2D models receive (N,C,Y,X) from the engines, which squeeze the singleton z).
    """

    in_channels: int
    out_channels: int
    spatial_dims: int
    is_segmentation: bool

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def final_activation(self, logits: torch.Tensor) -> torch.Tensor: ...


class Loss(Protocol):
    """``loss(logits, target[, weight]) -> scalar``; ``check_target`` explains bad layouts."""

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, *args: Any) -> torch.Tensor: ...


class Metric(Protocol):
    """``metric(probabilities, target) -> float or 0-d tensor``.

    ``higher_is_better`` lets the trainer pick the best checkpoint without a hand-set flag.
    """

    higher_is_better: ClassVar[bool]

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> Any: ...


class Transform(Protocol):
    """A numpy -> numpy (or tensor) step; random ones draw only from the ``rng`` they are given.

    ``spatial`` transforms must make the same choice for raw, label and weight of one sample,
    which the pipeline guarantees by handing them generators seeded alike.
    """

    spatial: ClassVar[bool]

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> Any: ...


class SliceBuilder(Protocol):
    """Turns volume shapes into the list of patch slices (``raw_slices``, ``label_slices``)."""

    raw_slices: list[tuple[slice, ...]]
    label_slices: list[tuple[slice, ...]] | None


class Predictor(Protocol):
    """Built with the model (and device, output_dir); ``predictor(dataset)`` writes its outputs."""

    def __call__(self, dataset: Any) -> Any: ...


class Postprocessor(Protocol):
    """Turns a prediction array (C,Z,Y,X) into an instance segmentation (Z,Y,X)."""

    def __call__(self, prediction: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class BlockwisePostprocessor(Postprocessor, Protocol):
    """A postprocessor that can also segment a prediction too large for memory.

    Streaming predictors call ``segment_blocks`` instead of ``__call__``: ``read(index)`` gives
    the probabilities ``(C, *block)`` at a (Z,Y,X) slice tuple, ``open_output(n)`` is called once
    with the object count and returns ``write(index, labels)``; the result must equal
    ``__call__`` on the whole volume. Returns n.
    """

    def segment_blocks(
        self,
        read: Callable[[tuple[slice, ...]], np.ndarray],
        shape: tuple[int, ...],
        block: tuple[int, ...],
        open_output: Callable[[int], Callable[[tuple[slice, ...], np.ndarray], None]],
        scratch_dir: str | None = None,
    ) -> int: ...


def iter_kinds() -> Iterator[str]:
    """The registered kinds in a stable order."""
    return iter(KINDS)


class Deferred:
    """A component whose ``Config`` is importable without its implementation.

    Validating a config needs only schemas; the implementation (and torch) is imported on first
    use. A plugin registers ``Deferred("pkg.heavy_module:Thing", ThingConfig)`` from a light
    module; config-time checks (``check_config``, ``check_patch_shape``) that are themselves light
    can be passed as keyword ``attrs`` so validation stays torch-free.
    """

    def __init__(
        self, target: str, config: type[BaseModel], doc: str | None = None, **attrs: Any
    ) -> None:
        self.target = target
        self.Config = config
        self.__doc__ = doc or config.__doc__
        self.__name__ = target.rpartition(":")[2]
        self._attrs = attrs
        self._resolved: Any = None

    def light(self, name: str) -> Any:
        """A config-time helper given at registration, or None (never imports the target)."""
        return self._attrs.get(name)

    def resolve(self) -> Any:
        """Import and return the implementation (cached)."""
        if self._resolved is None:
            import importlib

            module, _, attr = self.target.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            self._resolved = obj
        return self._resolved

    def __repr__(self) -> str:
        return f"Deferred({self.target!r})"
