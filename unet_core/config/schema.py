"""Pydantic models of an experiment, keyed exactly like the reference's YAML.

Component sections (``model``, ``loss``, ``eval_metric``, ``optimizer``, ``lr_scheduler``,
``predictor``, ``postprocessor``, slice builders, transforms, the dataset keys of ``loaders``)
are :class:`~unet_core.config.refs.ComponentRef` objects: the component's name and its own validated
``Config``, made once when the experiment is loaded, so a third-party component is checked
exactly like a built-in and the engines never re-read a section as a dict.
"""

from __future__ import annotations

import re
import warnings
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)

from unet_core.config.refs import ComponentRef, RefOf
from unet_core.config.shapes import three_values, zyx

#: The reference's component defaults, named once: the section (or ``loaders.dataset``) that
#: may omit its ``name`` and the component it then means.
DEFAULT_NAMES: dict[str, str] = {
    "optimizer": "Adam",
    "predictor": "StandardPredictor",
    "eval_metric": "MeanIoU",
    "dataset": "StandardHDF5Dataset",
    "slice_builder": "SliceBuilder",
}

Ref = ComponentRef[BaseModel]
ModelRef = Annotated[Ref, RefOf("models")]
LossRef = Annotated[Ref, RefOf("losses")]
MetricRef = Annotated[Ref, RefOf("metrics")]
OptimizerRef = Annotated[Ref, RefOf("optimizers")]
SchedulerRef = Annotated[Ref, RefOf("lr_schedulers")]
PredictorRef = Annotated[Ref, RefOf("predictors")]
PostprocessorRef = Annotated[Ref, RefOf("postprocessors")]
SliceBuilderRef = Annotated[Ref, RefOf("slice_builders")]
TransformRef = Annotated[Ref, RefOf("transforms")]


def default_ref(section: str, kind: str) -> Ref:
    """The reference's default component for ``section`` (validated with no parameters)."""
    return ComponentRef.from_spec(kind, DEFAULT_NAMES[section], (section,))


def _with_default_name(section: str, value: Any) -> Any:
    if isinstance(value, dict) and "name" not in value:
        return {"name": DEFAULT_NAMES[section], **value}
    return value


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
    amp: Literal["auto", "none", "bf16", "fp16"] = Field(
        "auto",
        description="Autocast precision: auto (bf16 where the device computes it natively: "
        "CPUs with AMX/AVX512-BF16, GPUs of compute capability >= 8; fp32 elsewhere), none "
        "(fp32), bf16, or fp16 with a grad scaler (CUDA). Loss and metrics stay fp32.",
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
    raw: list[TransformRef] = Field(default_factory=list, description="Transforms of the input.")
    label: list[TransformRef] | None = Field(None, description="Transforms of the target.")
    weight: list[TransformRef] | None = Field(None, description="Transforms of the weight map.")


class PhaseConfig(Section):
    file_paths: list[str] = Field(..., description="Files or folders (HDF5/TIFF).")
    slice_builder: SliceBuilderRef | None = Field(None, description="{name: SliceBuilder, ...}")
    transformer: TransformerConfig = Field(default_factory=TransformerConfig)

    @property
    def patch_shape(self) -> tuple[int, ...] | None:
        """The slice builder's ``patch_shape`` (the one place it is read), or None."""
        return _shape(self.slice_builder, "patch_shape")

    @property
    def stride_shape(self) -> tuple[int, ...] | None:
        """The slice builder's ``stride_shape``, or None."""
        return _shape(self.slice_builder, "stride_shape")

    @field_validator("file_paths", mode="before")
    @classmethod
    def _one_path(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class LoadersConfig(BaseModel):
    """Generic loader keys; the remaining keys belong to the dataset plugin named by ``dataset``
    (``raw_internal_path``, ``label_internal_path``, ``global_normalization``, ...) and are
    validated by that plugin's ``Config``."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    dataset: str = Field(DEFAULT_NAMES["dataset"], description="Dataset plugin name.")
    batch_size: int = Field(1, ge=1, description="Samples per batch (per process under DDP).")
    num_workers: int = Field(1, ge=0, description="DataLoader worker processes.")
    output_dir: str | None = Field(None, description="Prediction output folder.")
    random_scale: int | None = Field(None, ge=1, description="Random patch-extent jitter.")
    random_scale_probability: float = Field(
        0.5, ge=0, le=1, description="Probability that a patch is rescaled."
    )
    nonfinite: Literal["error", "fill"] = Field(
        "error",
        description="NaN/inf voxels in a float input (training and prediction): error refuses "
        "the file, naming the count and first position; fill replaces them by nonfinite_fill.",
    )
    nonfinite_fill: float = Field(
        0.0,
        allow_inf_nan=False,
        description="The value that replaces NaN/inf voxels with nonfinite: fill (before any "
        "transform).",
    )
    train: PhaseConfig | None = None
    val: PhaseConfig | None = None
    test: PhaseConfig | None = None

    _dataset_ref: Ref | None = PrivateAttr(None)

    def dataset_params(self) -> dict[str, Any]:
        """The keys that belong to the dataset plugin, as written."""
        return dict(self.model_extra or {})

    @property
    def dataset_ref(self) -> Ref:
        """``dataset`` + its keys as a validated ref (made by the loader, or here once)."""
        if self._dataset_ref is None:
            spec = {"name": self.dataset, **self.dataset_params()}
            self._dataset_ref = ComponentRef.from_spec("datasets", spec, ("loaders",))
        return self._dataset_ref

    def with_dataset_ref(self, ref: Ref) -> LoadersConfig:
        """Adopt the loader's already validated dataset ref (so it is not validated again)."""
        self._dataset_ref = ref
        return self

    def dataset_setting(self, key: str, default: Any) -> Any:
        """One typed parameter of the dataset's ``Config`` (``default`` if it has none)."""
        return getattr(self.dataset_ref.config, key, default)


def block_shape(value: list[int] | None) -> list[int] | None:
    """Validator of a (Z, Y, X) block shape key: three positive integers, or null."""
    return zyx(value, minimum=1)


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
    block_shape: Annotated[list[int] | None, BeforeValidator(three_values)] = Field(
        None,
        description="(Z,Y,X) of one task's output block, a multiple of the output chunks; "
        "default twice the chunk shape per axis.",
    )
    connect_timeout: float = Field(
        10.0, gt=0, description="Seconds to wait for `scheduler` before giving up."
    )
    memory_limit: str | None = Field(
        None,
        description='Memory per LocalCluster worker ("4GB", "500MiB"); none: Dask\'s '
        "auto (the machine's memory shared by the workers). A worker above 95 % is restarted.",
    )

    @field_validator("block_shape")
    @classmethod
    def _block(cls, v: list[int] | None) -> list[int] | None:
        return block_shape(v)

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\s*\d+(\.\d+)?\s*([kmgt]i?b|b)?\s*", v, re.I):
            raise ValueError("expected a size such as 4GB, 500MiB or 2000000000 (bytes)")
        return v


class ExperimentConfig(Section):
    """A whole experiment: the reference's top-level keys, nothing else."""

    model: ModelRef = Field(..., description="{name: UNet3D, in_channels: 1, ...}")
    loss: LossRef | None = Field(None, description="Training loss (train only).")
    eval_metric: MetricRef | None = Field(
        None, description="Validation metric; MeanIoU when omitted."
    )
    optimizer: OptimizerRef = Field(
        default_factory=lambda: default_ref("optimizer", "optimizers"),
        description="Default: Adam.",
    )
    lr_scheduler: SchedulerRef | None = Field(None, description="Torch LR scheduler.")
    trainer: TrainerConfig | None = None
    loaders: LoadersConfig | None = None
    predictor: PredictorRef = Field(
        default_factory=lambda: default_ref("predictor", "predictors"),
        description="Prediction strategy.",
    )
    postprocessor: PostprocessorRef | None = Field(
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
        return _with_default_name("optimizer", v)

    @field_validator("predictor", mode="before")
    @classmethod
    def _default_predictor_name(cls, v: Any) -> Any:
        if v is None:
            return default_ref("predictor", "predictors")
        return _with_default_name("predictor", v)

    @property
    def metric(self) -> Ref:
        """``eval_metric``, or the reference's default metric when it is omitted."""
        return self.eval_metric or default_ref("eval_metric", "metrics")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str | None) -> str | None:
        if v is None:
            return v
        base, _, index = v.partition(":")
        if base not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise ValueError(f"device must be cpu, cuda, cuda:N or mps, got {v!r}")
        return v


def _shape(ref: Ref | None, key: str) -> tuple[int, ...] | None:
    value = getattr(ref.config, key, None) if ref is not None else None
    return tuple(int(n) for n in value) if value is not None else None
