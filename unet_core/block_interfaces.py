"""The contracts of the block-wise paths: a predictor that runs block by block on a Dask
cluster and a postprocessor that segments a volume too large for memory.

Kept apart from :mod:`unet_core.interfaces` (which re-exports them, the module plugins
import) because only the out-of-core engines use them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class BlockOutput:
    """How a block-wise predictor's output array is stored, for one input volume."""

    #: Name of the output array (``predictions``).
    name: str
    #: (C,)Z,Y,X shape and dtype of the stored array.
    shape: tuple[int, ...]
    dtype: Any
    #: Spatial (Z,Y,X) chunk shape, or None for the engine's default.
    chunks: tuple[int, ...] | None = None
    compression: str | int | None = None
    #: Attributes of the array (how to read its values back, the input it came from).
    attrs: dict[str, Any] = field(default_factory=dict)
    #: How overlapping patches combine: ``overwrite`` (later patches win) or ``gaussian``.
    blending: Literal["overwrite", "gaussian"] = "overwrite"
    #: stored value * ``scale`` = probability, for a postprocessor (uint8: 1/255).
    scale: float = 1.0
    #: The stored values are label ids, not probabilities (pyramid levels: nearest voxel).
    labels: bool = False
    #: Coarser levels of a multiscale pyramid to add once the output is complete.
    pyramid_levels: int = 0


@runtime_checkable
class BlockwisePredictor(Protocol):
    """What the Dask engine calls on a predictor that declares ``blockwise = True``.

    The engine cuts the output into blocks of whole chunks; on a worker, each block's task
    calls ``patches`` on the dataset narrowed to the patches touching it, blends them with
    ``blending`` and writes ``stored(values)`` into its own chunks. ``on_worker()`` is called
    once per worker before the first block (e.g. no loader subprocesses: workers are daemons).
    """

    #: Channels of the blended probabilities (C of (C,Z,Y,X)).
    channels: int
    #: The ``unet.formats`` name of the output (it must take concurrent writes: zarr).
    output_format: str
    #: A postprocessor to run on the finished output, or None.
    postprocessor: Any
    overwrite: bool

    def output_file(self, dataset: Any) -> Any:
        """Where the output of ``dataset`` goes (a path)."""
        ...

    def block_output(self, volume: tuple[int, ...], source: str) -> BlockOutput:
        """The output array of the (Z,Y,X) ``volume`` predicted from the input ``source``."""
        ...

    def patches(self, dataset: Any) -> Any:
        """(probabilities (C,*patch), (Z,Y,X) output index) of every patch of ``dataset``."""
        ...

    def stored(self, values: np.ndarray) -> np.ndarray:
        """Blended probabilities (C,*block) -> the values written (labels or probabilities)."""
        ...

    def on_worker(self) -> None:
        """Prepare to run inside a Dask worker (called once per worker)."""
        ...


@runtime_checkable
class BlockwisePostprocessor(Protocol):
    """A postprocessor that can also segment a prediction too large for memory.

    Streaming predictors call ``segment_blocks`` instead of ``__call__``: ``read(index)`` gives
    the probabilities ``(C, *block)`` at a (Z,Y,X) slice tuple, ``open_output(n)`` is called once
    with the object count and returns ``write(index, labels)``; the result must equal
    ``__call__`` on the whole volume. Returns n.
    """

    def __call__(self, prediction: np.ndarray) -> np.ndarray: ...

    def segment_blocks(
        self,
        read: Callable[[tuple[slice, ...]], np.ndarray],
        shape: tuple[int, ...],
        block: tuple[int, ...],
        open_output: Callable[[int], Callable[[tuple[slice, ...], np.ndarray], None]],
        scratch_dir: str | None = None,
    ) -> int: ...
