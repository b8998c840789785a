"""What a component of each kind looks like.

A component is any object registered under an entry-point group (or with
:func:`unet_core.registry.register`) that carries a Pydantic v2 ``Config`` model.
``registry.create(kind, spec, **context)`` validates ``spec`` with ``Config`` and then builds it
with ``component.from_config(config, **context)`` when that classmethod exists, otherwise with
``component(**config.model_dump(), **context)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import numpy as np
    import torch

from unet_core.block_interfaces import BlockOutput as BlockOutput
from unet_core.block_interfaces import BlockwisePostprocessor as BlockwisePostprocessor
from unet_core.block_interfaces import BlockwisePredictor as BlockwisePredictor
from unet_core.format_interfaces import ArrayLike as ArrayLike
from unet_core.format_interfaces import VolumeFormat as VolumeFormat
from unet_core.format_interfaces import VolumeInfo as VolumeInfo
from unet_core.format_interfaces import VolumeReader as VolumeReader
from unet_core.format_interfaces import VolumeWriter as VolumeWriter
from unet_core.format_interfaces import WritableArray as WritableArray
from unet_core.kinds import HOOKS_GROUP, KINDS, singular  # noqa: F401 - re-exported


@runtime_checkable
class ValidatedSection(Protocol):
    """A config section already validated against the component it names (what
    :class:`~unet_core.config.refs.ComponentRef` is): the registry builds it as it is."""

    kind: str
    name: str
    config: BaseModel

    @property
    def where(self) -> str: ...


class ComponentConfig(BaseModel):
    """Base for every component's ``Config``: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


@runtime_checkable
class Component(Protocol):
    """Anything the registry can build: it declares its parameters as a Pydantic model."""

    Config: ClassVar[type[BaseModel]]


# The contracts. Each Protocol below is the contract of one kind (the table in
# :mod:`unet_core.contracts` says which members the engines call and checks them when a plugin
# is loaded). An annotated member *with* a default is an optional capability: a component may
# declare it (or inherit the Protocol to get the default); the engines read it through
# :func:`unet_core.contracts.declared`, never with a getattr of their own. Optional hooks
# default to None.


class Model(Protocol):
    """A network (a ``torch.nn.Module``). ``model(x)`` returns logits in train mode.

    ``spatial_dims`` is 2 or 3 (2D models receive (N,C,Y,X) from the engines, which squeeze the
    singleton z). ``logits(x)`` is the raw output whatever the mode (default: the model's own
    call); ``final_activation`` maps logits to the eval-mode output (default: identity).
    """

    in_channels: int
    out_channels: int
    spatial_dims: int = 3
    is_segmentation: bool = True
    logits: ClassVar[Callable[..., Any] | None] = None
    final_activation: ClassVar[Callable[..., Any] | None] = None
    #: config-time ``check_patch_shape(config, patch_shape) -> str | None`` (torch-free).
    check_patch_shape: ClassVar[Callable[..., Any] | None] = None
    #: ``explain_mismatch(found_state, expected_state, model_config) -> [phrases]``: which
    #: ``model.*`` keys probably differ when a checkpoint does not fit (only the plugin knows).
    explain_mismatch: ClassVar[Callable[..., list[str]] | None] = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class Loss(Protocol):
    """``loss(logits, target[, weight]) -> scalar tensor``.

    ``needs_weight`` makes the dataset load the per-voxel weight map and pass it as the third
    argument; ``target_layout`` is the target it expects (one mask per channel, class indices
    without the channel axis, or dense values); ``check_config(config, model) -> list[str]``
    explains bad loss/model pairs.
    """

    needs_weight: ClassVar[bool] = False
    target_layout: ClassVar[Literal["masks", "indices", "dense"]] = "masks"
    check_config: ClassVar[Callable[..., Any] | None] = None

    def __call__(self, logits: torch.Tensor, target: torch.Tensor, *args: Any) -> torch.Tensor: ...


class Metric(Protocol):
    """``metric(probabilities, target) -> float or 0-d tensor``.

    ``higher_is_better`` lets the trainer pick the best checkpoint without a hand-set flag.
    ``scores(probabilities, target) -> {name: float}``, where a metric has it, gives several
    named numbers at once (``unet evaluate`` reports each as a row; same direction).
    """

    higher_is_better: ClassVar[bool] = True
    scores: ClassVar[Callable[..., dict[str, float]] | None] = None

    def __call__(self, prediction: torch.Tensor, target: torch.Tensor) -> Any: ...


class Dataset(Protocol):
    """A dataset class: ``create_datasets(config, loaders, phase, needs_weight)`` makes one
    torch ``Dataset`` per input file.

    ``input_files(config, loaders, phase)`` lists what a phase reads (default: the phase's
    ``file_paths`` with folders expanded); ``collate_fn`` batches test items (default: torch's).
    """

    input_files: ClassVar[Callable[..., list[str]] | None] = None
    collate_fn: ClassVar[Callable[..., Any] | None] = None

    @classmethod
    def create_datasets(
        cls, config: Any, loaders: Any, phase: str, needs_weight: bool = False
    ) -> list[Any]: ...

    def __getitem__(self, index: int) -> Any: ...

    def __len__(self) -> int: ...


class Transform(Protocol):
    """A numpy -> numpy (or tensor) step; random ones draw only from the ``rng`` they are given.

    ``spatial`` transforms must make the same choice for raw, label and weight of one sample,
    which the pipeline guarantees by handing them generators seeded alike; ``sync_keys`` names
    the ``config`` fields that decide their geometry (they must agree across those lists).
    """

    spatial: ClassVar[bool] = False
    sync_keys: ClassVar[tuple[str, ...]] = ()

    def __call__(self, array: np.ndarray, rng: np.random.Generator) -> Any: ...


class SliceBuilder(Protocol):
    """Turns volume shapes into the list of patch slices (``raw_slices``, ``label_slices``)."""

    raw_slices: list[tuple[slice, ...]]
    label_slices: list[tuple[slice, ...]] | None


class Predictor(Protocol):
    """Built with the model (and device, output_dir); ``predictor(dataset)`` writes its outputs.

    A predictor that chooses its own tiles sets ``retiles`` and gives
    ``slice_builder_overrides(volume_shape) -> dict | None`` for each test volume. One that
    can run block by block on a Dask cluster (a ``distributed:`` section) sets ``blockwise``
    and has the members of :class:`BlockwisePredictor` (checked when it is loaded).
    """

    retiles: bool = False
    slice_builder_overrides: ClassVar[Callable[..., Any] | None] = None
    blockwise: ClassVar[bool] = False

    def __call__(self, dataset: Any) -> Any: ...


class Postprocessor(Protocol):
    """Turns a prediction array (C,Z,Y,X) into an instance segmentation (Z,Y,X).

    ``segment_blocks`` (see :class:`BlockwisePostprocessor`) is the optional out-of-core path;
    ``segment_dask`` the optional one on a Dask cluster (it may be close to, rather than equal
    to, ``__call__``, as the postprocessor documents).
    """

    segment_blocks: ClassVar[Callable[..., int] | None] = None
    #: ``segment_dask(client, read, shape, block, open_output, scratch_dir=)`` -> n: the
    #: segmentation as tasks on a Dask cluster (``read`` and the writer must pickle).
    segment_dask: ClassVar[Callable[..., int] | None] = None

    def __call__(self, prediction: np.ndarray) -> np.ndarray: ...


class InferenceBackend(Protocol):
    """Runs the network's forward passes for prediction (``predictor.backend``).

    The predictors keep tiling, blending, TTA and outputs; a backend only turns a batch into
    the model's eval-mode output. ``prepare(model, device, model_key)`` is called once per run
    with the eval-mode model; ``model_key()`` gives a digest of its weights and config
    (computed on first call, for caching a converted model). It returns ``forward(x) -> y`` on
    float32 (N,C,*spatial) CPU tensors, or None to let the predictor run the model in torch
    itself (amp, channels_last, compile).
    ``devices`` lists the torch device types it can serve (None: any).
    """

    devices: ClassVar[tuple[str, ...] | None] = None

    def prepare(
        self, model: torch.nn.Module, device: torch.device, model_key: Callable[[], str]
    ) -> Callable[[torch.Tensor], torch.Tensor] | None: ...


class Optimizer(Protocol):
    """What an optimizer component builds (from ``params``): a ``torch.optim.Optimizer``.

    ``needs_closure`` (declared by the component or the optimizer) makes the trainer call
    ``step(closure)``, as LBFGS requires.
    """

    needs_closure: ClassVar[bool] = False
    param_groups: list[dict[str, Any]]

    def step(self, closure: Callable[[], Any] | None = None) -> Any: ...

    def zero_grad(self, set_to_none: bool = True) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class LRScheduler(Protocol):
    """What an LR-scheduler component builds (from ``optimizer``); stepped once per validation.

    ``needs_metric`` makes the trainer pass the validation score to ``step`` (and the builder
    ``higher_is_better``), as ``ReduceLROnPlateau`` requires.
    """

    needs_metric: ClassVar[bool] = False

    def step(self, *args: Any) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


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
        """Import and return the implementation (cached); failures raise ImportFailure."""
        if self._resolved is None:
            from unet_core.plugin_import import import_object

            self._resolved = import_object(self.target)
        return self._resolved

    def __repr__(self) -> str:
        return f"Deferred({self.target!r})"
