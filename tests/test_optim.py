"""Built-in optimizers and LR schedulers: created through the registry, checked on torch's side."""

from __future__ import annotations

import math

import pytest
import torch

from unet_core import registry
from unet_core.errors import ConfigError, TrainingError

OPTIMIZERS = "Adam AdamW Adamax RAdam NAdam SparseAdam Adadelta Adagrad RMSprop Rprop SGD LBFGS"
SCHEDULERS = (
    "StepLR MultiStepLR ExponentialLR CosineAnnealingLR ReduceLROnPlateau "
    "CosineAnnealingWarmRestarts CyclicLR OneCycleLR LinearLR ConstantLR PolynomialLR"
)


def _params() -> list[torch.nn.Parameter]:
    return list(torch.nn.Linear(3, 2).parameters())


def _optimizer(spec: dict, params: list | None = None) -> torch.optim.Optimizer:
    return registry.create("optimizers", spec, params=_params() if params is None else params)


def _group(opt: torch.optim.Optimizer) -> dict:
    return opt.param_groups[0]


def test_every_torch_optimizer_and_scheduler_is_registered() -> None:
    assert set(OPTIMIZERS.split()) <= set(registry.list("optimizers"))
    assert set(SCHEDULERS.split()) <= set(registry.list("lr_schedulers"))
    for name in OPTIMIZERS.split() + SCHEDULERS.split():
        kind = "optimizers" if name in OPTIMIZERS.split() else "lr_schedulers"
        component = registry.get(kind, name)  # imports it and checks its Config schema
        assert component.Config.model_json_schema()["properties"] is not None
        rec = registry.default_registry.record(kind, name)
        assert (rec.distribution, rec.status) == ("unet-core", "ok"), rec


# -- optimizers: explicit values reach torch ------------------------------------------------------
EXPLICIT = [
    ({"name": "Adam", "learning_rate": 0.02, "weight_decay": 1e-5, "betas": [0.8, 0.9]},
     {"lr": 0.02, "weight_decay": 1e-5, "betas": (0.8, 0.9), "eps": 1e-8, "amsgrad": False}),
    ({"name": "AdamW", "learning_rate": 3e-4, "weight_decay": 0.05, "amsgrad": True},
     {"lr": 3e-4, "weight_decay": 0.05, "betas": (0.9, 0.999), "amsgrad": True}),
    ({"name": "Adamax", "learning_rate": 2e-3, "betas": [0.5, 0.6], "eps": 1e-6},
     {"lr": 2e-3, "betas": (0.5, 0.6), "eps": 1e-6, "weight_decay": 0.0}),
    ({"name": "RAdam", "learning_rate": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1},
     {"lr": 1e-2, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ({"name": "NAdam", "momentum_decay": 5e-3, "betas": [0.85, 0.95]},
     {"lr": 1e-3, "momentum_decay": 5e-3, "betas": (0.85, 0.95)}),
    ({"name": "SparseAdam", "sparse_gradients": True, "learning_rate": 0.1, "betas": [0.7, 0.8]},
     {"lr": 0.1, "betas": (0.7, 0.8), "eps": 1e-8}),
    ({"name": "Adadelta", "learning_rate": 1.0, "rho": 0.95, "weight_decay": 1e-4},
     {"lr": 1.0, "rho": 0.95, "eps": 1e-6, "weight_decay": 1e-4}),
    ({"name": "Adagrad", "lr_decay": 0.01, "initial_accumulator_value": 0.1},
     {"lr": 1e-3, "lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-10}),
    ({"name": "RMSprop", "alpha": 0.9, "momentum": 0.5, "centered": True},
     {"alpha": 0.9, "momentum": 0.5, "centered": True, "eps": 1e-8, "weight_decay": 0.0}),
    ({"name": "Rprop", "etas": [0.4, 1.5], "step_sizes": [1e-5, 10]},
     {"etas": (0.4, 1.5), "step_sizes": (1e-5, 10.0)}),
    ({"name": "SGD", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
     {"lr": 0.1, "momentum": 0.9, "dampening": 0.0, "nesterov": True, "weight_decay": 1e-4}),
    ({"name": "LBFGS", "learning_rate": 1.0, "max_iter": 5, "history_size": 7,
      "line_search_fn": "strong_wolfe"},
     {"lr": 1.0, "max_iter": 5, "max_eval": 6, "history_size": 7,
      "line_search_fn": "strong_wolfe"}),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), EXPLICIT, ids=lambda v: v.get("name", ""))
def test_optimizer_hyperparameters_reach_torch(spec: dict, expected: dict) -> None:
    opt = _optimizer(spec)
    assert isinstance(opt, getattr(torch.optim, spec["name"]))
    group = _group(opt)
    for key, value in expected.items():
        assert group[key] == value, key


# -- optimizers: the reference's defaults when keys are omitted -----------------------------------
REFERENCE_DEFAULTS = {
    "Adam": {"betas": (0.9, 0.999)},
    "AdamW": {"betas": (0.9, 0.999)},  # weight_decay 0 as in the reference, not torch's 0.01
    "Adamax": {"betas": (0.9, 0.999)},
    "RAdam": {"betas": (0.9, 0.999)},
    "NAdam": {"betas": (0.9, 0.999), "momentum_decay": 4e-3},
    "Adadelta": {"rho": 0.9},  # lr 1e-3 as in the reference, not torch's 1.0
    "Adagrad": {"lr_decay": 0.0},
    "RMSprop": {"alpha": 0.99},
    "Rprop": {"etas": (0.5, 1.2), "step_sizes": (1e-6, 50)},
    "SGD": {"momentum": 0.0, "dampening": 0.0, "nesterov": False},
    "LBFGS": {"max_iter": 20, "max_eval": 25, "tolerance_grad": 1e-7, "tolerance_change": 1e-9,
              "history_size": 100},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REFERENCE_DEFAULTS))
def test_optimizer_defaults_follow_the_reference(name: str) -> None:
    group = _group(_optimizer({"name": name}))
    assert group["lr"] == 1e-3
    if name not in ("Rprop", "LBFGS"):  # torch has no weight decay for these
        assert group["weight_decay"] == 0
    for key, value in REFERENCE_DEFAULTS[name].items():
        assert group[key] == value, key


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"name": "Adam", "learning_rat": 0.1}, ["learning_rat", "Adam"]),
        ({"name": "SGD", "momentun": 0.9}, ["momentun", "SGD"]),
        ({"name": "Adam", "lr": 0.1}, ["learning_rate", "`lr`"]),
        ({"name": "Adam", "learning_rate": 0}, ["learning_rate", "greater than 0"]),
        ({"name": "AdamW", "weight_decay": -1}, ["weight_decay"]),
        ({"name": "Adam", "betas": [1.0, 0.999]}, ["betas", "less than 1"]),
        ({"name": "Adam", "betas": [0.9]}, ["betas"]),
        ({"name": "Adadelta", "rho": 1.5}, ["rho"]),
        ({"name": "SGD", "nesterov": True}, ["nesterov", "momentum > 0"]),
        ({"name": "SGD", "nesterov": True, "momentum": 0.9, "dampening": 0.1}, ["dampening"]),
        ({"name": "Rprop", "weight_decay": 1e-4}, ["weight_decay", "no weight decay"]),
        ({"name": "Rprop", "etas": [1.2, 0.5]}, ["etas", "0 < decrease < 1 < increase"]),
        ({"name": "Rprop", "step_sizes": [50, 1e-6]}, ["step_sizes"]),
        ({"name": "LBFGS", "line_search_fn": "armijo"}, ["line_search_fn", "strong_wolfe"]),
        ({"name": "LBFGS", "weight_decay": 0.1}, ["weight_decay"]),
        ({"name": "SparseAdam"}, ["SparseAdam", "dense gradients", "Adam", "sparse_gradients"]),
    ],
)
def test_bad_optimizer_configs_are_rejected_naming_the_key(spec: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        registry.validate("optimizers", spec)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_rprop_and_lbfgs_accept_zero_weight_decay_for_compatibility() -> None:
    for name in ("Rprop", "LBFGS", "SparseAdam"):
        extra = {"sparse_gradients": True} if name == "SparseAdam" else {}
        opt = _optimizer({"name": name, "weight_decay": 0, **extra})
        assert "weight_decay" not in opt.defaults


def test_unknown_optimizer_name_is_an_error_not_adam() -> None:
    from unet_core.errors import PluginError

    with pytest.raises(PluginError, match=r"Unknown optimizer 'Adamw'.*Installed optimizers"):
        _optimizer({"name": "Adamw"})


def test_torch_construction_errors_become_config_errors() -> None:
    with pytest.raises(ConfigError, match="optimizer 'Adam' could not be built.*empty"):
        _optimizer({"name": "Adam"}, params=[])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="could not be built"):
        registry.create("optimizers", {"name": "SGD"}, params=[])


def test_sparse_adam_steps_on_sparse_gradients() -> None:
    emb = torch.nn.Embedding(4, 2, sparse=True)
    with torch.no_grad():
        emb.weight.fill_(1.0)
    opt = _optimizer({"name": "SparseAdam", "sparse_gradients": True, "learning_rate": 0.1},
                     list(emb.parameters()))  # fmt: skip
    emb(torch.tensor([1])).sum().backward()
    opt.step()
    # First Adam step moves a touched row by lr (m/sqrt(v) = sign(g)), the others not at all.
    assert torch.allclose(emb.weight[1], torch.full((2,), 0.9), atol=1e-6)
    assert torch.equal(emb.weight[0], torch.ones(2))


def test_lbfgs_needs_a_closure_and_minimises_with_one() -> None:
    assert registry.get("optimizers", "LBFGS").needs_closure is True
    assert registry.get("optimizers", "Adam").needs_closure is False
    x = torch.nn.Parameter(torch.zeros(2))
    opt = _optimizer({"name": "LBFGS", "learning_rate": 1.0}, [x])
    assert isinstance(opt, torch.optim.LBFGS)
    assert opt.needs_closure is True  # what the trainer reads from the optimizer it was given
    assert getattr(_optimizer({"name": "Adam"}), "needs_closure", False) is False
    target = torch.tensor([3.0, -1.0])

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((x - target) ** 2).sum()
        loss.backward()
        return loss

    with pytest.raises(TrainingError, match=r"LBFGS.*optimizer.step\(closure\)"):
        opt.step()
    opt.step(closure)
    assert torch.allclose(x.detach(), target, atol=1e-4)
    assert set(opt.state_dict()["param_groups"][0]) >= {"lr", "max_iter", "history_size"}


def test_lbfgs_steps_a_channels_last_3d_convolution() -> None:
    """A channels_last_3d model (the CPU default for 3D) has channels_last gradients, which
    torch's LBFGS cannot flatten with view(-1): the step must still minimise."""
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(2, 3, 3, padding=1).to(memory_format=torch.channels_last_3d)
    x = torch.randn(1, 2, 4, 6, 6).to(memory_format=torch.channels_last_3d)
    assert not conv.weight.is_contiguous()
    opt = _optimizer({"name": "LBFGS", "learning_rate": 1.0, "max_iter": 10}, conv.parameters())

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (conv(x) ** 2).mean()
        loss.backward()
        return loss

    before = closure().item()
    opt.step(closure)
    assert closure().item() < 0.5 * before
    assert not conv.weight.is_contiguous()  # the model keeps its layout


def test_sgd_step_matches_the_hand_computed_update() -> None:
    x = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = _optimizer({"name": "SGD", "learning_rate": 0.1, "momentum": 0.9,
                      "weight_decay": 0.5}, [x])  # fmt: skip
    for _ in range(2):
        opt.zero_grad()
        (x**2).sum().backward()  # grad 2x, plus weight decay 0.5x
        opt.step()
    # step 1: g = 2.5*x0, x1 = x0 - 0.1*2.5*x0 = 0.75*x0 (buf = 2.5*x0)
    # step 2: g = 2.5*x1, buf = 0.9*2.5*x0 + 2.5*0.75*x0 = 4.125*x0, x2 = 0.75*x0 - 0.4125*x0
    assert torch.allclose(x.detach(), torch.tensor([0.3375, -0.675]))


# -- schedulers ----------------------------------------------------------------------------------
def _sgd(lr: float = 1.0, momentum: float = 0.9) -> torch.optim.Optimizer:
    return _optimizer({"name": "SGD", "learning_rate": lr, "momentum": momentum})


def _scheduler(spec: dict, optimizer: torch.optim.Optimizer | None = None, **context):
    return registry.create("lr_schedulers", spec, optimizer=optimizer or _sgd(), **context)


SCHEDULER_EXPLICIT = [
    ({"name": "StepLR", "step_size": 3, "gamma": 0.5}, {"step_size": 3, "gamma": 0.5}),
    ({"name": "ExponentialLR", "gamma": 0.9}, {"gamma": 0.9}),
    ({"name": "CosineAnnealingLR", "T_max": 7, "eta_min": 1e-4}, {"T_max": 7, "eta_min": 1e-4}),
    ({"name": "CosineAnnealingWarmRestarts", "T_0": 4, "T_mult": 2, "eta_min": 0.01},
     {"T_0": 4, "T_mult": 2, "eta_min": 0.01}),
    ({"name": "ReduceLROnPlateau", "mode": "max", "factor": 0.2, "patience": 8, "threshold": 0.01,
      "threshold_mode": "abs", "cooldown": 2, "min_lr": 1e-5, "eps": 1e-9},
     {"mode": "max", "factor": 0.2, "patience": 8, "threshold": 0.01, "threshold_mode": "abs",
      "cooldown": 2, "min_lrs": [1e-5], "eps": 1e-9}),
    ({"name": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0, "step_size_up": 3, "step_size_down": 5,
      "mode": "exp_range", "gamma": 0.99, "base_momentum": 0.7, "max_momentum": 0.95},
     {"base_lrs": [0.1], "max_lrs": [1.0], "total_size": 8.0, "step_ratio": 3 / 8,
      "mode": "exp_range", "gamma": 0.99, "base_momentums": [0.7], "max_momentums": [0.95]}),
    ({"name": "OneCycleLR", "max_lr": 2.0, "total_steps": 20, "div_factor": 10,
      "final_div_factor": 100, "three_phase": True},
     {"total_steps": 20, "base_lrs": [0.2]}),
    ({"name": "LinearLR", "start_factor": 0.5, "end_factor": 0.9, "total_iters": 4},
     {"start_factor": 0.5, "end_factor": 0.9, "total_iters": 4}),
    ({"name": "ConstantLR", "factor": 0.25, "total_iters": 2}, {"factor": 0.25, "total_iters": 2}),
    ({"name": "PolynomialLR", "total_iters": 9, "power": 2.0}, {"total_iters": 9, "power": 2.0}),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "expected"), SCHEDULER_EXPLICIT, ids=lambda v: v.get("name", ""))
def test_scheduler_hyperparameters_reach_torch(spec: dict, expected: dict) -> None:
    sched = _scheduler(spec)
    assert type(sched).__name__ == spec["name"]
    for key, value in expected.items():
        assert getattr(sched, key) == pytest.approx(value), key


def test_one_cycle_lr_writes_its_bounds_into_the_param_group() -> None:
    opt = _sgd()
    _scheduler({"name": "OneCycleLR", "max_lr": 2.0, "epochs": 2, "steps_per_epoch": 5,
                "div_factor": 10, "final_div_factor": 100}, opt)  # fmt: skip
    group = _group(opt)
    assert (group["initial_lr"], group["max_lr"], group["min_lr"]) == pytest.approx((0.2, 2, 2e-3))
    assert (group["base_momentum"], group["max_momentum"]) == (0.85, 0.95)


def test_scheduler_defaults_are_torchs() -> None:
    plateau = _scheduler({"name": "ReduceLROnPlateau"})
    assert (plateau.mode, plateau.factor, plateau.patience, plateau.threshold) == (
        "min", 0.1, 10, 1e-4)  # fmt: skip
    assert (plateau.threshold_mode, plateau.cooldown, plateau.min_lrs, plateau.eps) == (
        "rel", 0, [0.0], 1e-8)  # fmt: skip
    assert _scheduler({"name": "StepLR", "step_size": 2}).gamma == 0.1
    assert sorted(_scheduler({"name": "MultiStepLR", "milestones": [2, 3]}).milestones) == [2, 3]
    assert _scheduler({"name": "CosineAnnealingLR", "T_max": 3}).eta_min == 0.0
    linear = _scheduler({"name": "LinearLR"})
    assert (linear.start_factor, linear.end_factor, linear.total_iters) == (1 / 3, 1.0, 5)
    poly = _scheduler({"name": "PolynomialLR"})
    assert (poly.total_iters, poly.power) == (5, 1.0)


def _lrs(spec: dict, steps: int) -> list[float]:
    opt = _sgd(lr=1.0)
    sched = _scheduler(spec, opt)
    out = []
    for _ in range(steps):
        opt.step()
        sched.step()
        out.append(_group(opt)["lr"])
    return out


def test_schedules_follow_the_hand_computed_learning_rates() -> None:
    assert _lrs({"name": "StepLR", "step_size": 2, "gamma": 0.5}, 5) == [1, 0.5, 0.5, 0.25, 0.25]
    # the reference's tests/resources/config_train.yml: MultiStepLR milestones [2, 3], gamma 0.5
    assert _lrs({"name": "MultiStepLR", "milestones": [2, 3], "gamma": 0.5}, 4) == pytest.approx(
        [1, 0.5, 0.25, 0.25])  # fmt: skip
    assert _lrs({"name": "ExponentialLR", "gamma": 0.5}, 3) == pytest.approx([0.5, 0.25, 0.125])
    cosine = _lrs({"name": "CosineAnnealingLR", "T_max": 4}, 4)
    assert cosine == pytest.approx([0.5 * (1 + math.cos(math.pi * t / 4)) for t in (1, 2, 3, 4)])
    assert _lrs({"name": "ConstantLR", "factor": 0.5, "total_iters": 2}, 3) == [0.5, 1, 1]


def test_reduce_on_plateau_steps_with_the_metric() -> None:
    assert registry.get("lr_schedulers", "ReduceLROnPlateau").needs_metric is True
    for name in SCHEDULERS.split():
        if name != "ReduceLROnPlateau":
            assert registry.get("lr_schedulers", name).needs_metric is False, name
    opt = _sgd(lr=1.0)
    sched = _scheduler({"name": "ReduceLROnPlateau", "mode": "max", "factor": 0.5, "patience": 1,
                        "threshold": 0, "threshold_mode": "abs", "min_lr": 0.3}, opt)  # fmt: skip
    lrs = []
    for score in [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7]:
        sched.step(score)
        lrs.append(_group(opt)["lr"])
    # best 0.6 at step 2; two steps without improvement (> patience 1) halve the lr, twice,
    # the second time clipped to min_lr 0.3; 0.7 improves, then two more bad steps stay at 0.3
    assert lrs == pytest.approx([1, 1, 1, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3])


def test_reduce_on_plateau_mode_follows_the_metric_direction() -> None:
    assert _scheduler({"name": "ReduceLROnPlateau"}, higher_is_better=True).mode == "max"
    assert _scheduler({"name": "ReduceLROnPlateau"}, higher_is_better=False).mode == "min"
    assert _scheduler({"name": "ReduceLROnPlateau", "mode": "min"}, higher_is_better=False)
    with pytest.raises(ConfigError, match=r"lr_scheduler.mode is 'min'.*higher-is-better.*max"):
        _scheduler({"name": "ReduceLROnPlateau", "mode": "min"}, higher_is_better=True)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"name": "StepLR"}, ["step_size", "required"]),
        ({"name": "StepLR", "step_size": 2, "gama": 0.5}, ["gama"]),
        ({"name": "StepLR", "step_size": 0}, ["step_size"]),
        ({"name": "MultiStepLR", "milestones": [0, 3]}, ["milestones"]),
        ({"name": "ExponentialLR"}, ["gamma"]),
        ({"name": "CosineAnnealingLR", "tmax": 3}, ["T_max", "tmax"]),
        ({"name": "ReduceLROnPlateau", "factor": 1.0}, ["factor", "less than 1"]),
        ({"name": "ReduceLROnPlateau", "mode": "maximum"}, ["mode", "'min' or 'max'"]),
        ({"name": "ReduceLROnPlateau", "min_lr": -1}, ["min_lr"]),
        ({"name": "ReduceLROnPlateau", "last_epoch": 3}, ["last_epoch"]),
        ({"name": "CyclicLR", "base_lr": 1.0, "max_lr": 0.1}, ["base_lr", "max_lr"]),
        ({"name": "OneCycleLR", "max_lr": 1.0}, ["total_steps", "epochs", "steps_per_epoch"]),
        ({"name": "OneCycleLR", "max_lr": 1.0, "total_steps": 5, "pct_start": 1}, ["pct_start"]),
        ({"name": "LinearLR", "start_factor": 0}, ["start_factor"]),
    ],
)
def test_bad_scheduler_configs_are_rejected_naming_the_key(spec: dict, words: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        registry.validate("lr_schedulers", spec)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_scheduler_that_cannot_drive_the_optimizer_is_a_config_error() -> None:
    adagrad = _optimizer({"name": "Adagrad"})
    with pytest.raises(ConfigError, match=r"lr_scheduler 'CyclicLR'.*Adagrad.*cycle_momentum"):
        _scheduler({"name": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0}, adagrad)
    # without momentum cycling it works
    sched = _scheduler({"name": "CyclicLR", "base_lr": 0.1, "max_lr": 1.0,
                        "cycle_momentum": False}, adagrad)  # fmt: skip
    assert sched.base_lrs == [0.1]


def test_verbose_is_accepted_for_compatibility_and_has_no_effect() -> None:
    sched = _scheduler({"name": "StepLR", "step_size": 2, "verbose": True})
    assert sched.step_size == 2


def test_building_twice_from_one_spec_does_not_change_it() -> None:
    spec = {"name": "StepLR", "step_size": 2}
    _scheduler(spec)
    _scheduler(spec)
    assert spec == {"name": "StepLR", "step_size": 2}


def test_scheduler_state_round_trips_for_resume() -> None:
    opt = _sgd(lr=1.0)
    sched = _scheduler({"name": "StepLR", "step_size": 2, "gamma": 0.5}, opt)
    for _ in range(3):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = _sgd(lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    sched2 = _scheduler({"name": "StepLR", "step_size": 2, "gamma": 0.5}, opt2)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    assert _group(opt2)["lr"] == 0.25
