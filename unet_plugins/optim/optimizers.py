"""torch.optim optimizers as registry components, with the reference's keys and defaults.

Every optimizer takes ``learning_rate`` (default 1e-3, as in pytorch-3dunet, whatever torch's
own default is) and ``weight_decay`` (default 0) plus the keys torch names for that algorithm.
``registry.create("optimizers", spec, params=model.parameters())`` returns the torch optimizer
itself, so its ``state_dict`` goes into checkpoints unchanged.

Two optimizers cannot run in a plain ``loss.backward(); optimizer.step()`` loop:

* ``LBFGS`` re-evaluates the loss several times per step, so the trainer must call
  ``optimizer.step(closure)``; the component and the optimizer it builds both say so with
  ``needs_closure = True``, and that optimizer raises a :class:`TrainingError` (not a torch
  traceback) when stepped without a closure.
* ``SparseAdam`` only accepts sparse gradients (``nn.Embedding(sparse=True)``); every U-Net here
  has dense convolution gradients, so it is rejected at validation time unless the config says
  ``sparse_gradients: true``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from unet_core.errors import ConfigError, TrainingError
from unet_core.interfaces import ComponentConfig

if TYPE_CHECKING:
    from collections.abc import Iterable

    import torch

Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


# -- configs ------------------------------------------------------------------------------------
class OptimizerConfig(ComponentConfig):
    """Keys every optimizer shares (the reference reads them for all of them)."""

    learning_rate: float = Field(1e-3, gt=0, description="Initial learning rate (torch's `lr`).")
    weight_decay: float = Field(0.0, ge=0, description="L2 penalty (decoupled for AdamW).")

    @model_validator(mode="before")
    @classmethod
    def _lr_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "lr" in data:
            raise ValueError(
                "the learning rate key is `learning_rate` (as in pytorch-3dunet), not `lr`; "
                "rename it"
            )
        return data


class _NoWeightDecay(OptimizerConfig):
    """For torch optimizers without weight decay: the key is accepted only as 0."""

    weight_decay: float = Field(
        0.0, description="Accepted for compatibility; must be 0 (this optimizer has none)."
    )

    @field_validator("weight_decay")
    @classmethod
    def _zero(cls, v: float) -> float:
        if v != 0:
            raise ValueError(
                "this optimizer has no weight decay (torch takes none); remove the key or set "
                "it to 0, or use AdamW/SGD for weight decay"
            )
        return v


class _AdamFamily(OptimizerConfig):
    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="Decay rates of the first and second moment, each in [0, 1)."
    )
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")


class _AdamAMSGrad(_AdamFamily):
    amsgrad: bool = Field(False, description="Use the AMSGrad variant.")
    fused: bool | None = Field(None, description="Fused kernel; None lets torch choose.")


class _DecoupledWeightDecay(_AdamFamily):
    decoupled_weight_decay: bool = Field(False, description="AdamW-style weight decay.")


class AdamConfig(_AdamAMSGrad):
    """Parameters of torch.optim.Adam (the reference's default optimizer)."""


class AdamWConfig(_AdamAMSGrad):
    """Parameters of torch.optim.AdamW. weight_decay defaults to 0 as in the reference
    (torch's own default is 0.01)."""


class AdamaxConfig(_AdamFamily):
    """Parameters of torch.optim.Adamax."""


class RAdamConfig(_DecoupledWeightDecay):
    """Parameters of torch.optim.RAdam."""


class NAdamConfig(_DecoupledWeightDecay):
    """Parameters of torch.optim.NAdam."""

    momentum_decay: float = Field(4e-3, ge=0, description="Momentum decay (psi).")


class SparseAdamConfig(_NoWeightDecay):
    """Parameters of torch.optim.SparseAdam (sparse gradients only)."""

    betas: tuple[Beta, Beta] = Field(
        (0.9, 0.999), description="Decay rates of the first and second moment, each in [0, 1)."
    )
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    sparse_gradients: bool = Field(
        False,
        description="Confirm that every parameter gets sparse gradients (nn.Embedding("
        "sparse=True)). SparseAdam fails on the dense gradients of convolutional U-Nets.",
    )

    @model_validator(mode="after")
    def _only_sparse(self) -> SparseAdamConfig:
        if not self.sparse_gradients:
            raise ValueError(
                "SparseAdam only works with sparse gradients (nn.Embedding(sparse=True)); the "
                "convolutional U-Nets produce dense gradients, so it would fail at the first "
                "step. Use Adam (same betas) instead, or set sparse_gradients: true if your "
                "model really has only sparse gradients"
            )
        return self


class AdadeltaConfig(OptimizerConfig):
    """Parameters of torch.optim.Adadelta (torch's own default lr is 1.0)."""

    rho: float = Field(0.9, ge=0, le=1, description="Decay of the running averages.")
    eps: float = Field(1e-6, gt=0, description="Added to the denominator for stability.")


class AdagradConfig(OptimizerConfig):
    """Parameters of torch.optim.Adagrad."""

    lr_decay: float = Field(0.0, ge=0, description="Learning-rate decay per step.")
    initial_accumulator_value: float = Field(0.0, ge=0, description="Start of the sum of squares.")
    eps: float = Field(1e-10, gt=0, description="Added to the denominator for stability.")
    fused: bool | None = Field(None, description="Fused kernel; None lets torch choose.")


class RMSpropConfig(OptimizerConfig):
    """Parameters of torch.optim.RMSprop."""

    alpha: float = Field(0.99, ge=0, le=1, description="Smoothing constant.")
    eps: float = Field(1e-8, gt=0, description="Added to the denominator for stability.")
    momentum: float = Field(0.0, ge=0, description="Momentum factor.")
    centered: bool = Field(False, description="Normalise by the estimated gradient variance.")


class RpropConfig(_NoWeightDecay):
    """Parameters of torch.optim.Rprop (a full-batch method; no weight decay)."""

    etas: tuple[float, float] = Field(
        (0.5, 1.2), description="(decrease, increase) factors: 0 < decrease < 1 < increase."
    )
    step_sizes: tuple[float, float] = Field(
        (1e-6, 50.0), description="(minimal, maximal) step size: 0 <= minimal <= maximal."
    )

    @field_validator("etas")
    @classmethod
    def _etas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 < v[0] < 1.0 < v[1]:
            raise ValueError(
                f"etas must be (decrease, increase) with 0 < decrease < 1 < increase, got {list(v)}"
            )
        return v

    @field_validator("step_sizes")
    @classmethod
    def _step_sizes(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.0 <= v[0] <= v[1]:
            raise ValueError(
                f"step_sizes must be (minimal, maximal) with 0 <= minimal <= maximal, got {list(v)}"
            )
        return v


class SGDConfig(OptimizerConfig):
    """Parameters of torch.optim.SGD."""

    momentum: float = Field(0.0, ge=0, description="Momentum factor.")
    dampening: float = Field(0.0, ge=0, le=1, description="Dampening for momentum.")
    nesterov: bool = Field(
        False, description="Nesterov momentum (needs momentum > 0, dampening 0)."
    )
    fused: bool | None = Field(None, description="Fused kernel; None lets torch choose.")

    @model_validator(mode="after")
    def _nesterov(self) -> SGDConfig:
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov: true needs momentum > 0 and dampening 0 (got momentum "
                f"{self.momentum}, dampening {self.dampening}); set momentum (e.g. 0.9) or "
                "nesterov: false"
            )
        return self


class LBFGSConfig(_NoWeightDecay):
    """Parameters of torch.optim.LBFGS (needs a closure; see the module docs)."""

    max_iter: int = Field(20, ge=1, description="Iterations per optimizer step.")
    max_eval: int | None = Field(
        None, ge=1, description="Loss evaluations per step; None means max_iter * 5 / 4."
    )
    tolerance_grad: float = Field(1e-7, ge=0, description="Stop when the gradient is this small.")
    tolerance_change: float = Field(1e-9, ge=0, description="Stop when updates are this small.")
    history_size: int = Field(100, ge=1, description="Number of stored updates.")
    line_search_fn: Literal["strong_wolfe"] | None = Field(
        None, description="'strong_wolfe' or None (fixed step)."
    )


# -- components ---------------------------------------------------------------------------------
class TorchOptimizer:
    """Shared builder: ``torch.optim.<torch_name>(params, lr=learning_rate, **other keys)``."""

    Config: ClassVar[type[OptimizerConfig]] = OptimizerConfig
    #: True when ``step`` must be given a closure that recomputes the loss (LBFGS).
    needs_closure: ClassVar[bool] = False
    #: Config keys that are not torch arguments.
    not_torch_keys: ClassVar[frozenset[str]] = frozenset()
    torch_name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.torch_name = cls.__dict__.get("torch_name", cls.__name__)

    @classmethod
    def torch_kwargs(cls, config: OptimizerConfig) -> dict[str, Any]:
        """The validated config as torch keyword arguments."""
        kwargs = config.model_dump(exclude=set(cls.not_torch_keys))
        kwargs["lr"] = kwargs.pop("learning_rate")
        if isinstance(config, _NoWeightDecay):
            kwargs.pop("weight_decay")
        return kwargs

    @classmethod
    def torch_class(cls) -> type[torch.optim.Optimizer]:
        import torch

        optimizer: type[torch.optim.Optimizer] = getattr(torch.optim, cls.torch_name)
        return optimizer

    @classmethod
    def from_config(cls, config: OptimizerConfig, params: Iterable[Any]) -> torch.optim.Optimizer:
        """Build the torch optimizer over ``params`` (tensors or parameter groups)."""
        try:
            return cls.torch_class()(params, **cls.torch_kwargs(config))
        except (ValueError, TypeError, RuntimeError) as exc:
            raise ConfigError(
                f"optimizer {cls.__name__!r} could not be built from {config.model_dump()}: "
                f"{exc}. Check the optimizer section of the config (and that the model has "
                "trainable parameters)."
            ) from exc


class Adam(TorchOptimizer):
    """Adam; also what a config without ``optimizer.name`` gets."""

    Config = AdamConfig


class AdamW(TorchOptimizer):
    """Adam with decoupled weight decay."""

    Config = AdamWConfig


class Adamax(TorchOptimizer):
    """Adam with the infinity norm."""

    Config = AdamaxConfig


class RAdam(TorchOptimizer):
    """Rectified Adam."""

    Config = RAdamConfig


class NAdam(TorchOptimizer):
    """Adam with Nesterov momentum."""

    Config = NAdamConfig


class SparseAdam(TorchOptimizer):
    """Adam for sparse gradients only (rejected for dense models; see the module docs)."""

    Config = SparseAdamConfig
    not_torch_keys = frozenset({"sparse_gradients"})


class Adadelta(TorchOptimizer):
    """Adadelta."""

    Config = AdadeltaConfig


class Adagrad(TorchOptimizer):
    """Adagrad."""

    Config = AdagradConfig


class RMSprop(TorchOptimizer):
    """RMSprop."""

    Config = RMSpropConfig


class Rprop(TorchOptimizer):
    """Resilient backpropagation (meant for full batches)."""

    Config = RpropConfig


class SGD(TorchOptimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    Config = SGDConfig


class LBFGS(TorchOptimizer):
    """L-BFGS; the trainer must call ``optimizer.step(closure)`` (``needs_closure``)."""

    Config = LBFGSConfig
    needs_closure = True

    @classmethod
    def torch_class(cls) -> type[torch.optim.Optimizer]:
        return _closure_checked_lbfgs()


@functools.cache
def _closure_checked_lbfgs() -> type[torch.optim.Optimizer]:
    """torch.optim.LBFGS whose ``step()`` without a closure is a clear TrainingError."""
    import torch

    class ClosureLBFGS(torch.optim.LBFGS):
        needs_closure = True

        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            if closure is None:
                raise TrainingError(
                    "The LBFGS optimizer evaluates the loss several times per step and must be "
                    "stepped as optimizer.step(closure), where the closure recomputes the loss "
                    "and its gradients; this training loop called optimizer.step() without one. "
                    "Use a trainer that passes a closure, or choose another optimizer (Adam)."
                )
            return super().step(self._contiguous_grads(closure))

        def _contiguous_grads(self, closure: Any) -> Any:
            """LBFGS flattens gradients with ``view(-1)``, which fails on the channels_last
            gradients of a channels_last model: hand it contiguous copies."""

            def closure_with_contiguous_grads() -> Any:
                loss = closure()
                for group in self.param_groups:
                    for p in group["params"]:
                        if p.grad is not None and not p.grad.is_contiguous():
                            p.grad = p.grad.contiguous()
                return loss

            return closure_with_contiguous_grads

    ClosureLBFGS.__name__ = ClosureLBFGS.__qualname__ = "LBFGS"
    return ClosureLBFGS
