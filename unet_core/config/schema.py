"""Pydantic models of an experiment, keyed exactly like the reference's YAML.

Component sections (``model``, ``loss``, ``eval_metric``, ``optimizer``, ``lr_scheduler``,
``predictor``, slice builders, transforms) stay plain ``{name: X, ...}`` mappings here; each is
validated against component X's own ``Config`` by :mod:`unet_core.config.validate`, so a
third-party component is checked exactly like a built-in.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ComponentSpec = dict[str, Any]


class Section(BaseModel):
    """Unknown keys are errors: the reference silently ignored them (its §12.1)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TensorboardFormatterConfig(Section):
    skip_last_target: bool = Field(False, description="Do not draw the last target channel.")
    log_channelwise: bool = Field(False, description="One image per prediction channel.")
    name: str | None = Field(None, description="Accepted for reference configs; unused.")


LEGACY_TRAINER_KEYS = {"epochs": "max_num_epochs", "iters": "max_num_iterations"}


class TrainerConfig(Section):
    """The reference's trainer keys (same defaults) plus opt-in speed options."""

    checkpoint_dir: str = Field(..., description="Checkpoints and logs/ (TensorBoard) go here.")
    max_num_epochs: int = Field(..., ge=1, description="Stop after this many epochs.")
    max_num_iterations: int = Field(..., ge=1, description="Stop after this many iterations.")
    validate_after_iters: int = Field(200, ge=1, description="Validate + checkpoint every N.")
    log_after_iters: int = Field(100, ge=1, description="Log train stats/images every N.")
    validate_iters: int | None = Field(None, description="Use at most N+1 validation batches.")
    num_iterations: int = Field(1, ge=1, description="Initial iteration counter.")
    num_epoch: int = Field(0, ge=0, description="Initial epoch counter.")
    eval_score_higher_is_better: bool | None = Field(
        None, description="Overrides the metric's own direction (None: ask the metric)."
    )
    skip_train_validation: bool = Field(False, description="No metric on training batches.")
    max_val_images: int = Field(
        100, ge=0, description="Validation batches whose images are logged."
    )
    resume: str | None = Field(None, description="Checkpoint to resume everything from.")
    pre_trained: str | None = Field(None, description="Checkpoint to take model weights from.")
    tensorboard_formatter: TensorboardFormatterConfig = Field(
        default_factory=TensorboardFormatterConfig
    )
    min_lr: float = Field(1e-6, ge=0, description="Stop when the learning rate falls below this.")
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none", description="Autocast: bf16 (CPU or CUDA) or fp16 with a grad scaler (CUDA)."
    )
    channels_last: bool | None = Field(
        None,
        description="channels_last(_3d) memory format. Default: on for 3D models on a CPU "
        "(~10 % faster steps there), off on GPUs.",
    )
    compile: bool = Field(False, description="torch.compile the model.")
    log_images: bool = Field(True, description="Write image panels to TensorBoard.")
    progress: Literal["auto", "bar", "lines", "none"] = Field(
        "auto", description="Live bar on a terminal, plain lines otherwise."
    )

    @model_validator(mode="before")
    @classmethod
    def _legacy_names(cls, data: Any) -> Any:
        """The reference's own test configs still say ``epochs``/``iters``."""
        if not isinstance(data, dict):
            return data
        for old, new in LEGACY_TRAINER_KEYS.items():
            if old in data and new not in data:
                warnings.warn(
                    f"trainer.{old} is deprecated; use trainer.{new}", FutureWarning, stacklevel=2
                )
                data = {**data, new: data[old]}
                del data[old]
        return data


class TransformerConfig(Section):
    raw: list[ComponentSpec] = Field(default_factory=list, description="Transforms of the input.")
    label: list[ComponentSpec] | None = Field(None, description="Transforms of the target.")
    weight: list[ComponentSpec] | None = Field(None, description="Transforms of the weight map.")


class PhaseConfig(Section):
    file_paths: list[str] = Field(..., description="Files or folders (HDF5/TIFF).")
    slice_builder: ComponentSpec | None = Field(None, description="{name: SliceBuilder, ...}")
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)

    @field_validator("file_paths", mode="before")
    @classmethod
    def _one_path(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class LoadersConfig(BaseModel):
    """Generic loader keys; the remaining keys belong to the dataset plugin named by ``dataset``
    (``raw_internal_path``, ``label_internal_path``, ``global_normalization``, ...) and are
    validated by that plugin's ``Config``."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    dataset: str = Field("StandardHDF5Dataset", description="Dataset plugin name.")
    batch_size: int = Field(1, ge=1, description="Samples per batch (per process under DDP).")
    num_workers: int = Field(1, ge=0, description="DataLoader worker processes.")
    output_dir: str | None = Field(None, description="Prediction output folder.")
    random_scale: int | None = Field(None, ge=1, description="Random patch-extent jitter.")
    random_scale_probability: float = Field(
        0.5, ge=0, le=1, description="Probability that a patch is rescaled."
    )
    train: PhaseConfig | None = None
    val: PhaseConfig | None = None
    test: PhaseConfig | None = None

    def dataset_params(self) -> dict[str, Any]:
        """The keys that belong to the dataset plugin."""
        return dict(self.model_extra or {})


class DistributedConfig(Section):
    """Prediction spread over a Dask cluster (docs/large-volumes.md)."""

    scheduler: str | None = Field(
        None,
        description="Address of a running Dask scheduler (tcp://host:8786); none starts a "
        "LocalCluster of `workers` processes on this machine.",
    )
    workers: int = Field(2, ge=1, description="Worker processes of the LocalCluster.")
    threads_per_worker: int = Field(
        1, ge=1, description="Torch threads (and Dask threads) per LocalCluster worker."
    )
    block_shape: list[int] | None = Field(
        None,
        description="(Z,Y,X) of one task's output block, a multiple of the output chunks; "
        "default twice the chunk shape per axis.",
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for `scheduler` before giving up."
    )

    @field_validator("block_shape")
    @classmethod
    def _block(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(x < 1 for x in v)):
            raise ValueError("expected 3 positive integers (Z, Y, X)")
        return v


class ExperimentConfig(Section):
    """A whole experiment: the reference's top-level keys, nothing else."""

    model: ComponentSpec = Field(..., description="{name: UNet3D, in_channels: 1, ...}")
    loss: ComponentSpec | None = Field(None, description="Training loss (train only).")
    eval_metric: ComponentSpec | None = Field(
        None, description="Validation metric; MeanIoU when omitted."
    )
    optimizer: ComponentSpec = Field(
        default_factory=lambda: {"name": "Adam"}, description="Default: Adam."
    )
    lr_scheduler: ComponentSpec | None = Field(None, description="Torch LR scheduler.")
    trainer: TrainerConfig | None = None
    loaders: LoadersConfig | None = None
    predictor: ComponentSpec = Field(
        default_factory=lambda: {"name": "StandardPredictor"}, description="Prediction strategy."
    )
    postprocessor: ComponentSpec | None = Field(
        None, description="Instance segmentation after prediction (e.g. ConnectedComponents)."
    )
    device: str | None = Field(None, description="cpu, cuda, cuda:N or mps; None picks the best.")
    manual_seed: int | None = Field(None, description="Seeds torch, numpy and augmentations.")
    model_path: str | None = Field(None, description="Checkpoint to predict with.")
    distributed: DistributedConfig | None = Field(
        None, description="Predict on a Dask cluster (output format zarr); none: one process."
    )

    @field_validator("optimizer", mode="before")
    @classmethod
    def _default_optimizer_name(cls, v: Any) -> Any:
        if isinstance(v, dict) and "name" not in v:
            return {"name": "Adam", **v}
        return v

    @field_validator("predictor", mode="before")
    @classmethod
    def _default_predictor_name(cls, v: Any) -> Any:
        if v is None:
            return {"name": "StandardPredictor"}
        if isinstance(v, dict) and "name" not in v:
            return {"name": "StandardPredictor", **v}
        return v

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        if v is None:
            return v
        base, _, index = v.partition(":")
        if base not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {v!r}")
        return v
