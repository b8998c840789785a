"""A test kit for plugin authors: check a component against its kind's contract.

Call it from your package's own tests, e.g. with pytest::

    from unet_core.testing import check_component

    def test_my_loss_meets_the_contract():
        check_component("losses", MyLoss, {"alpha": 0.5})

:func:`contract_problems` is the check the registry runs when it loads a component (a usable
``Config``, the members the engines call, typed capabilities); :func:`behaviour_problems`
builds the component as the engines do and runs it on tiny inputs (needs torch).
:func:`check_component` runs both and raises :class:`ContractViolation` listing every problem.
Datasets and predictors need files, so only their static contract is checked here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from unet_core.contracts import CONTRACTS, declared, problems
from unet_core.discovery import config_problem
from unet_core.kinds import KINDS
from unet_core.plugin_import import ImportFailure


class ContractViolation(AssertionError):
    """A component does not meet its kind's contract; ``problems`` lists why."""

    def __init__(self, kind: str, component: Any, found: list[str]) -> None:
        self.problems = found
        name = getattr(component, "__name__", repr(component))
        lines = "\n".join(f"  - {p}" for p in found)
        super().__init__(f"{name} does not meet the {kind} contract:\n{lines}")


def implementation(component: Any) -> Any:
    """The object the engines use: a ``Deferred`` entry resolved, anything else as it is."""
    from unet_core.interfaces import Deferred

    return component.resolve() if isinstance(component, Deferred) else component


def contract_problems(kind: str, component: Any) -> list[str]:
    """The load-time check: ``Config`` usable and the contract's members present; [] if none."""
    if kind not in KINDS:
        return [f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}"]
    problem = config_problem(component)
    if problem is not None:
        return [problem]
    try:
        return problems(kind, implementation(component))
    except ImportFailure as failure:
        return [failure.reason]


def behaviour_problems(
    kind: str, component: Any, params: Mapping[str, Any] | None = None, **options: Any
) -> list[str]:
    """Build ``component`` from ``params`` (validated by its Config) and run it on tiny inputs.

    ``options`` are per kind: models ``spatial``; losses ``out_channels``, ``spatial``,
    ``target``; metrics ``prediction``, ``target``; transforms ``array``, ``keeps_shape``;
    postprocessors ``prediction``; slice builders ``raw``, ``label``; optimizers ``step``.
    """
    check = _BEHAVIOURS.get(kind)
    if check is None:
        return []
    from unet_core.registry import build

    impl = implementation(component)
    config = component.Config.model_validate(dict(params or {}))
    try:
        return check(lambda **context: build(impl, config, **context), impl, options)
    except Exception as exc:  # noqa: BLE001 - any failure is a finding, with its reason
        return [f"{type(exc).__name__} while exercising it: {exc}".splitlines()[0]]


def check_component(
    kind: str,
    component: Any,
    params: Mapping[str, Any] | None = None,
    *,
    behaviour: bool = True,
    **options: Any,
) -> None:
    """Raise :class:`ContractViolation` unless ``component`` meets ``kind``'s contract."""
    found = contract_problems(kind, component)
    if not found and behaviour:
        found = behaviour_problems(kind, component, params, **options)
    if found:
        raise ContractViolation(kind, component, found)


# -- behaviour per kind ----------------------------------------------------------------------
Build = Callable[..., Any]


def _finite(t: Any) -> bool:
    import torch

    return bool(torch.isfinite(t).all())


def _missing(obj: Any, kind: str) -> list[str]:
    return [f"the built object has no callable `{m}`" for m in CONTRACTS[kind].instance
            if not callable(getattr(obj, m, None))]  # fmt: skip


def _model(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import torch

    model = build()
    found = _missing(model, "models")
    for name in ("in_channels", "out_channels"):
        if not isinstance(getattr(model, name, None), int):
            found.append(f"`{name}` must be an int attribute of the model")
    if found:
        return found
    dims = declared("models", model, "spatial_dims")
    spatial = tuple(options.get("spatial", (16,) * dims))
    x = torch.rand(2, model.in_channels, *spatial, generator=torch.Generator().manual_seed(0))
    want = (2, model.out_channels, *spatial)
    model.train()
    out = model(x)
    if tuple(out.shape) != want:
        return [f"train-mode output has shape {tuple(out.shape)}, expected {want}"]
    out.float().square().mean().backward()
    if not any(p.grad is not None for p in model.parameters()):
        found.append("no parameter received a gradient from the train-mode output")
    model.eval()
    with torch.no_grad():
        evaluated = model(x)
        logits_of = declared("models", model, "logits")
        activation = declared("models", model, "final_activation")
        if tuple(evaluated.shape) != want or not _finite(evaluated):
            found.append(f"eval-mode output has shape {tuple(evaluated.shape)} (expected {want})"
                         " or non-finite values")  # fmt: skip
        elif logits_of is not None and activation is not None:
            expected = activation(logits_of(x))
            if not torch.allclose(evaluated, expected, atol=1e-5):
                found.append("eval-mode output differs from final_activation(logits(x))")
    return found


def _loss(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import torch

    loss = build()
    gen = torch.Generator().manual_seed(0)
    channels = int(options.get("out_channels", 2))
    spatial = tuple(options.get("spatial", (4, 8, 8)))
    logits = torch.randn(2, channels, *spatial, generator=gen).requires_grad_(True)
    target = options.get("target")
    if target is None:
        target = _target(declared("losses", loss, "target_layout"), logits, gen)
    args = [logits, target]
    if declared("losses", loss, "needs_weight"):
        args.append(torch.rand(target.shape, generator=gen) + 0.5)
    value = loss(*args)
    if not isinstance(value, torch.Tensor) or value.numel() != 1:
        return [f"it returned {type(value).__name__} {getattr(value, 'shape', '')}, expected a "
                "scalar tensor"]  # fmt: skip
    if not _finite(value):
        return [f"it returned {value.item()} on finite inputs"]
    value.backward()  # type: ignore[no-untyped-call]
    if logits.grad is None or not _finite(logits.grad):
        return ["its gradient with respect to the logits is missing or not finite"]
    return []


def _target(layout: str, logits: Any, gen: Any) -> Any:
    import torch

    if layout == "indices":
        shape = (logits.shape[0], *logits.shape[2:])
        return torch.randint(0, logits.shape[1], shape, generator=gen)
    if layout == "dense":
        return torch.randn(logits.shape, generator=gen)
    return (torch.rand(logits.shape, generator=gen) > 0.5).float()


def _metric(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import torch

    metric = build()
    gen = torch.Generator().manual_seed(0)
    prediction = options.get("prediction")
    if prediction is None:
        prediction = torch.rand(1, 1, 4, 16, 16, generator=gen)
    target = options.get("target")
    if target is None:
        target = (torch.rand(prediction.shape, generator=gen) > 0.5).float()
    value = metric(prediction, target)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return [f"it returned {type(value).__name__}, expected a float or 0-d tensor"]
    return [] if math.isfinite(number) else [f"it returned {number} on finite inputs"]


def _transform(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import numpy as np
    import torch

    transform = build(**({"stats": options["stats"]} if "stats" in options else {}))
    array = options.get("array")
    if array is None:
        array = np.random.default_rng(0).random((8, 16, 16), dtype=np.float32)
    first, second = (transform(array.copy(), np.random.default_rng(7)) for _ in range(2))
    outputs = [np.asarray(o) if isinstance(o, np.ndarray | torch.Tensor) else None
               for o in (first, second)]  # fmt: skip
    if outputs[0] is None or outputs[1] is None:
        return [f"it returned {type(first).__name__}, expected a numpy array or a tensor"]
    found = []
    if not np.array_equal(outputs[0], outputs[1], equal_nan=True):
        found.append("two calls with generators seeded alike gave different results (draw "
                     "randomness only from the rng argument)")  # fmt: skip
    if options.get("keeps_shape", True) and outputs[0].shape[-3:] != array.shape[-3:]:
        found.append(f"the spatial shape changed from {array.shape[-3:]} to "
                     f"{outputs[0].shape[-3:]}")  # fmt: skip
    return found


def _postprocessor(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import numpy as np

    post = build()
    prediction = options.get("prediction")
    if prediction is None:
        prediction = np.random.default_rng(0).random((1, 8, 16, 16), dtype=np.float32)
    labels = np.asarray(post(prediction))
    if labels.shape != prediction.shape[1:] or labels.dtype.kind not in "iu":
        return [f"it returned {labels.dtype} {labels.shape}, expected integer labels of shape "
                f"{prediction.shape[1:]}"]  # fmt: skip
    return []


def _slice_builder(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import numpy as np

    raw = options.get("raw", np.zeros((16, 32, 32), dtype=np.float32))
    label = options.get("label", np.zeros(raw.shape[-3:], dtype=np.int64))
    builder = build(raw=raw, label=label, weight=None)
    slices, labels = getattr(builder, "raw_slices", None), getattr(builder, "label_slices", 0)
    if not isinstance(slices, list) or not all(_within(s, raw.shape) for s in slices):
        return ["`raw_slices` must be a list of slice tuples inside the raw volume"]
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(slices)):
        return ["`label_slices` must be None or a list as long as `raw_slices`"]
    return []


def _within(index: Any, shape: Sequence[int]) -> bool:
    if not isinstance(index, tuple) or len(index) > len(shape):
        return False
    dims = shape[len(shape) - len(index) :]
    return all(isinstance(s, slice) and 0 <= (s.start or 0) <= (s.stop or n) <= n
               for s, n in zip(index, dims))  # fmt: skip


def _optimizer(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import torch

    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = build(params=[param])
    found = _missing(optimizer, "optimizers")
    if not isinstance(getattr(optimizer, "param_groups", None), list):
        found.append("the built object has no `param_groups` list")
    if found or not options.get("step", True):
        return found

    def closure() -> Any:
        optimizer.zero_grad()
        value = param.square().sum()
        value.backward()  # type: ignore[no-untyped-call]
        return value

    closes = declared("optimizers", impl, "needs_closure") or declared(
        "optimizers", optimizer, "needs_closure"
    )
    for _ in range(3):
        if closes:
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
    if not _finite(param) or torch.equal(param.detach(), torch.tensor([1.0, -2.0])):
        return ["three steps on sum(p**2) left the parameter unchanged or non-finite"]
    optimizer.load_state_dict(optimizer.state_dict())
    return []


def _lr_scheduler(build: Build, impl: Any, options: dict[str, Any]) -> list[str]:
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    needs_metric = bool(declared("lr_schedulers", impl, "needs_metric"))
    context: dict[str, Any] = {"optimizer": optimizer}
    if needs_metric:
        context["higher_is_better"] = True
    scheduler = build(**context)
    found = _missing(scheduler, "lr_schedulers")
    if found:
        return found
    for step in range(3):
        optimizer.step()
        scheduler.step(*([0.5] if needs_metric else []))
        lr = optimizer.param_groups[0]["lr"]
        if not (isinstance(lr, float) and math.isfinite(lr) and lr >= 0):
            return [f"after {step + 1} step(s) the learning rate is {lr!r}"]
    scheduler.load_state_dict(scheduler.state_dict())
    return []


_BEHAVIOURS: dict[str, Callable[[Build, Any, dict[str, Any]], list[str]]] = {
    "models": _model,
    "losses": _loss,
    "metrics": _metric,
    "transforms": _transform,
    "postprocessors": _postprocessor,
    "slice_builders": _slice_builder,
    "optimizers": _optimizer,
    "lr_schedulers": _lr_scheduler,
}
