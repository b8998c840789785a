"""torch.optim.lr_scheduler schedulers as registry components, keyed as torch spells them.

``registry.create("lr_schedulers", spec, optimizer=opt)`` returns the torch scheduler itself.
Required torch arguments (``StepLR.step_size``, ``ExponentialLR.gamma``, ...) are required keys;
the others keep torch's defaults. ``last_epoch`` is not a key: a resumed run restores the
scheduler from its ``state_dict`` instead. Each component has ``needs_metric`` (True only for
ReduceLROnPlateau): the trainer then calls ``scheduler.step(validation_score)``.

ReduceLROnPlateau takes the metric's direction from the trainer (``higher_is_better=`` at
creation): when ``mode`` is not given it follows the metric, and a ``mode`` that contradicts
it (the learning rate would be cut while the score improves) is a ConfigError.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from unet_core.errors import ConfigError
from unet_core.interfaces import ComponentConfig

if TYPE_CHECKING:
    import torch

PositiveInt = Annotated[int, Field(ge=1)]
LearningRates = float | list[float]


def _non_negative(value: LearningRates, key: str) -> None:
    values = value if isinstance(value, list) else [value]
    if any(v < 0 for v in values):
        raise ValueError(f"{key} must be >= 0, got {value}")


# -- configs ------------------------------------------------------------------------------------
class SchedulerConfig(ComponentConfig):
    """Keys every scheduler accepts."""

    verbose: bool | str = Field(
        False,
        description="Accepted for compatibility with configs written for older torch; no effect "
        "(the trainer logs the learning rate at every validation).",
    )


class StepLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.StepLR."""

    step_size: int = Field(..., ge=1, description="Multiply the lr by gamma every step_size steps.")
    gamma: float = Field(0.1, gt=0, description="Multiplicative factor.")


class MultiStepLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.MultiStepLR."""

    milestones: list[PositiveInt] = Field(
        ..., description="Scheduler steps at which the lr is multiplied by gamma."
    )
    gamma: float = Field(0.1, gt=0, description="Multiplicative factor.")


class ExponentialLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.ExponentialLR."""

    gamma: float = Field(..., gt=0, description="Multiplicative factor per step.")


class CosineAnnealingLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.CosineAnnealingLR."""

    T_max: int = Field(..., ge=1, description="Steps from the initial lr down to eta_min.")
    eta_min: float = Field(0.0, ge=0, description="Minimal learning rate.")


class ReduceLROnPlateauConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.ReduceLROnPlateau."""

    mode: Literal["min", "max"] = Field(
        "min",
        description="'min' if a lower score is better, 'max' if higher; when omitted, follows "
        "the eval metric's direction.",
    )
    factor: float = Field(0.1, gt=0, lt=1, description="new_lr = lr * factor.")
    patience: int = Field(10, ge=0, description="Steps without improvement before reducing.")
    threshold: float = Field(1e-4, ge=0, description="Minimal change counted as improvement.")
    threshold_mode: Literal["rel", "abs"] = Field("rel", description="Relative or absolute.")
    cooldown: int = Field(0, ge=0, description="Steps to wait after a reduction.")
    min_lr: LearningRates = Field(0.0, description="Lower bound on the lr (per group if a list).")
    eps: float = Field(1e-8, ge=0, description="Changes smaller than this are ignored.")

    @model_validator(mode="after")
    def _min_lr(self) -> ReduceLROnPlateauConfig:
        _non_negative(self.min_lr, "min_lr")
        return self


class CosineAnnealingWarmRestartsConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.CosineAnnealingWarmRestarts."""

    T_0: int = Field(..., ge=1, description="Steps until the first restart.")
    T_mult: int = Field(1, ge=1, description="Each period is T_mult times longer.")
    eta_min: float = Field(0.0, ge=0, description="Minimal learning rate.")


class _Momentum(SchedulerConfig):
    cycle_momentum: bool = Field(
        True, description="Cycle momentum (SGD momentum or Adam beta1) inversely to the lr."
    )


class CyclicLRConfig(_Momentum):
    """Parameters of torch.optim.lr_scheduler.CyclicLR (scale_fn is not expressible in YAML)."""

    base_lr: LearningRates = Field(..., description="Lower lr bound (replaces the optimizer's).")
    max_lr: LearningRates = Field(..., description="Upper lr bound.")
    step_size_up: int = Field(2000, ge=1, description="Steps in the increasing half-cycle.")
    step_size_down: int | None = Field(
        None, ge=1, description="Steps in the decreasing half-cycle; None = step_size_up."
    )
    mode: Literal["triangular", "triangular2", "exp_range"] = Field(
        "triangular", description="Amplitude policy."
    )
    gamma: float = Field(1.0, gt=0, description="exp_range decay per step.")
    base_momentum: float = Field(0.8, ge=0, description="Lower momentum bound.")
    max_momentum: float = Field(0.9, ge=0, description="Upper momentum bound.")

    @model_validator(mode="after")
    def _bounds(self) -> CyclicLRConfig:
        _non_negative(self.base_lr, "base_lr")
        _non_negative(self.max_lr, "max_lr")
        if isinstance(self.base_lr, float) and isinstance(self.max_lr, float):
            if self.base_lr > self.max_lr:
                raise ValueError(f"base_lr ({self.base_lr}) must not exceed max_lr ({self.max_lr})")
        return self


class OneCycleLRConfig(_Momentum):
    """Parameters of torch.optim.lr_scheduler.OneCycleLR."""

    max_lr: LearningRates = Field(..., description="Peak learning rate.")
    total_steps: int | None = Field(
        None, ge=1, description="Scheduler steps in the cycle; or give epochs and steps_per_epoch."
    )
    epochs: int | None = Field(None, ge=1, description="With steps_per_epoch, instead of total.")
    steps_per_epoch: int | None = Field(None, ge=1, description="With epochs.")
    pct_start: float = Field(0.3, gt=0, lt=1, description="Fraction of the cycle spent rising.")
    anneal_strategy: Literal["cos", "linear"] = Field("cos", description="Annealing shape.")
    base_momentum: LearningRates = Field(0.85, description="Lower momentum bound.")
    max_momentum: LearningRates = Field(0.95, description="Upper momentum bound.")
    div_factor: float = Field(25.0, gt=0, description="initial_lr = max_lr / div_factor.")
    final_div_factor: float = Field(1e4, gt=0, description="min_lr = initial_lr / this.")
    three_phase: bool = Field(False, description="Use the three-phase schedule.")

    @model_validator(mode="after")
    def _length(self) -> OneCycleLRConfig:
        _non_negative(self.max_lr, "max_lr")
        if self.total_steps is None and (self.epochs is None or self.steps_per_epoch is None):
            raise ValueError(
                "OneCycleLR needs total_steps, or both epochs and steps_per_epoch; give "
                "total_steps = the number of scheduler steps (validations) in the run"
            )
        return self


class LinearLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.LinearLR."""

    start_factor: float = Field(1 / 3, gt=0, le=1, description="lr factor at the first step.")
    end_factor: float = Field(1.0, ge=0, le=1, description="lr factor after total_iters.")
    total_iters: int = Field(5, ge=1, description="Steps of the linear ramp.")


class ConstantLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.ConstantLR."""

    factor: float = Field(1 / 3, ge=0, le=1, description="lr factor until total_iters.")
    total_iters: int = Field(5, ge=0, description="Steps with the reduced lr.")


class PolynomialLRConfig(SchedulerConfig):
    """Parameters of torch.optim.lr_scheduler.PolynomialLR."""

    total_iters: int = Field(5, ge=1, description="Steps until the lr reaches 0.")
    power: float = Field(1.0, ge=0, description="Polynomial power.")


# -- components ---------------------------------------------------------------------------------
class TorchScheduler:
    """Shared builder: ``torch.optim.lr_scheduler.<torch_name>(optimizer, **config)``."""

    Config: ClassVar[type[SchedulerConfig]] = SchedulerConfig
    #: True when ``step`` needs the validation score (ReduceLROnPlateau).
    needs_metric: ClassVar[bool] = False
    #: Config keys that are not torch arguments.
    not_torch_keys: ClassVar[frozenset[str]] = frozenset({"verbose"})
    torch_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.torch_name = cls.__dict__.get("torch_name", cls.__name__)

    @classmethod
    def torch_kwargs(
        cls, config: SchedulerConfig, higher_is_better: bool | None = None
    ) -> dict[str, Any]:
        """The validated config as torch keyword arguments."""
        return config.model_dump(exclude=set(cls.not_torch_keys))

    @classmethod
    def from_config(
        cls,
        config: SchedulerConfig,
        optimizer: torch.optim.Optimizer,
        higher_is_better: bool | None = None,
    ) -> Any:
        """Build the scheduler; ``higher_is_better`` is the eval metric's direction, if known."""
        from torch.optim import lr_scheduler

        kwargs = cls.torch_kwargs(config, higher_is_better)
        try:
            return getattr(lr_scheduler, cls.torch_name)(optimizer, **kwargs)
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(
                f"lr_scheduler {cls.__name__!r} could not be built with {kwargs} for the "
                f"optimizer {type(optimizer).__name__}: {exc}. Change the lr_scheduler section "
                "(or the optimizer) of the config."
            ) from exc


class StepLR(TorchScheduler):
    """Decay by gamma every step_size steps."""

    Config = StepLRConfig


class MultiStepLR(TorchScheduler):
    """Decay by gamma at each milestone."""

    Config = MultiStepLRConfig


class ExponentialLR(TorchScheduler):
    """Decay by gamma every step."""

    Config = ExponentialLRConfig


class CosineAnnealingLR(TorchScheduler):
    """Cosine from the initial lr down to eta_min over T_max steps."""

    Config = CosineAnnealingLRConfig


class ReduceLROnPlateau(TorchScheduler):
    """Reduce the lr when the validation score stops improving."""

    Config = ReduceLROnPlateauConfig
    needs_metric = True

    @classmethod
    def torch_kwargs(
        cls, config: SchedulerConfig, higher_is_better: bool | None = None
    ) -> dict[str, Any]:
        kwargs = super().torch_kwargs(config, higher_is_better)
        if higher_is_better is None:
            return kwargs
        problems = cls.check_config(config, higher_is_better)
        if problems:
            raise ConfigError(problems[0])
        kwargs["mode"] = "max" if higher_is_better else "min"
        return kwargs

    @classmethod
    def check_config(cls, config: SchedulerConfig, higher_is_better: bool) -> list[str]:
        """An explicit ``mode`` against the eval metric's direction (config time and build)."""
        wanted = "max" if higher_is_better else "min"
        mode = getattr(config, "mode", wanted)
        if "mode" not in config.model_fields_set or mode == wanted:
            return []
        better = "higher" if higher_is_better else "lower"
        return [
            f"lr_scheduler.mode is {mode!r} but the eval metric is {better}-is-better, so "
            "ReduceLROnPlateau would cut the learning rate while the score improves. Set "
            f"lr_scheduler.mode: {wanted} (or remove the key to follow the metric)."
        ]


class CosineAnnealingWarmRestarts(TorchScheduler):
    """Cosine annealing restarted every T_0 * T_mult**i steps."""

    Config = CosineAnnealingWarmRestartsConfig


class CyclicLR(TorchScheduler):
    """Cycle the lr between base_lr and max_lr (needs an optimizer with momentum or betas)."""

    Config = CyclicLRConfig


class OneCycleLR(TorchScheduler):
    """The 1cycle policy; stepping past total_steps is an error in torch."""

    Config = OneCycleLRConfig


class LinearLR(TorchScheduler):
    """Linear ramp of the lr factor from start_factor to end_factor."""

    Config = LinearLRConfig


class ConstantLR(TorchScheduler):
    """A constant lr factor for total_iters steps, then the initial lr."""

    Config = ConstantLRConfig


class PolynomialLR(TorchScheduler):
    """Polynomial decay to 0 over total_iters steps."""

    Config = PolynomialLRConfig
