"""The contract of each kind, checked when a component is loaded and read by the engines.

The Protocols in :mod:`unet_core.interfaces` declare each kind's members; this module says
which of them the engines call (the table :data:`CONTRACTS`), checks a loaded component
against it, as pluggy checks a hook implementation against its spec, and reads a component's
optional capabilities with the contract's default (:func:`declared`), so no engine needs a
``getattr`` probe with a default of its own.
"""

from __future__ import annotations

import types
import typing
from collections import abc
from dataclasses import dataclass
from functools import cache
from typing import Any

from unet_core import interfaces as i
from unet_core.kinds import singular


@dataclass(frozen=True)
class Contract:
    """What the engines need from one kind.

    ``component`` members are called on the registered object itself (a dataset class's
    ``create_datasets``); ``instance`` members on what it builds. For optimizers and LR
    schedulers the registered object is usually a factory whose ``from_config`` returns a torch
    object, so their instance members are checked on the built object only (by
    :mod:`unet_core.testing`).
    """

    protocol: type
    instance: tuple[str, ...] = ("__call__",)
    component: tuple[str, ...] = ()
    built_by_factory: bool = False
    call: str = ""  # how the engine calls it, for messages
    #: capability -> (Protocol, methods) the component must also have when it declares it true
    implies: tuple[tuple[str, type, tuple[str, ...]], ...] = ()


_MODULE_METHODS = ("__call__", "parameters", "to", "train", "eval", "state_dict",
                   "load_state_dict")  # fmt: skip

CONTRACTS: dict[str, Contract] = {
    "models": Contract(i.Model, _MODULE_METHODS, call="a torch.nn.Module: model(x) -> logits"),
    "losses": Contract(i.Loss, call="loss(logits, target[, weight]) -> scalar tensor"),
    "metrics": Contract(i.Metric, call="metric(probabilities, target) -> float"),
    "datasets": Contract(
        i.Dataset,
        ("__getitem__", "__len__"),
        ("create_datasets",),
        call="Cls.create_datasets(config, loaders, phase, needs_weight) -> [Dataset, ...]",
    ),
    "transforms": Contract(i.Transform, call="transform(array, rng) -> array"),
    "slice_builders": Contract(i.SliceBuilder, (), call="built with raw=, label=, weight="),
    "predictors": Contract(
        i.Predictor,
        call="predictor(dataset) writes the outputs",
        implies=(
            (
                "blockwise",
                i.BlockwisePredictor,
                ("output_file", "block_output", "patches", "stored", "on_worker"),
            ),
        ),
    ),
    "postprocessors": Contract(i.Postprocessor, call="postprocessor(prediction) -> labels"),
    "optimizers": Contract(
        i.Optimizer,
        ("step", "zero_grad", "state_dict", "load_state_dict"),
        built_by_factory=True,
        call="from_config(config, params) -> torch.optim.Optimizer",
    ),
    "lr_schedulers": Contract(
        i.LRScheduler,
        ("step", "state_dict", "load_state_dict"),
        built_by_factory=True,
        call="from_config(config, optimizer) -> a torch LR scheduler",
    ),
    "formats": Contract(
        i.VolumeFormat,
        ("open",),  # ``create`` only for formats that can be written (read-only ones exist)
        call="format.open(path) -> reader of lazy arrays; format.create(tmp, final) -> writer",
    ),
    "backends": Contract(
        i.InferenceBackend,
        ("prepare",),
        call="backend.prepare(model, device, model_key) -> forward(x) -> y, or None (torch)",
    ),
}


@cache
def capabilities(kind: str) -> dict[str, tuple[Any, Any]]:
    """``{name: (annotation, default)}`` of the optional members the kind's Protocol declares."""
    protocol = CONTRACTS[kind].protocol
    hints = typing.get_type_hints(protocol, vars(i), include_extras=False)
    out = {}
    for name, hint in hints.items():
        if name in vars(protocol):
            if typing.get_origin(hint) is typing.ClassVar:
                (hint,) = typing.get_args(hint)
            out[name] = (hint, vars(protocol)[name])
    return out


def declared(kind: str, obj: object, name: str) -> Any:
    """``obj``'s capability ``name`` as it declares it, or the contract's default.

    A name that is not a capability of the kind is a programming error (KeyError), so a typo
    in an engine cannot silently read a default.
    """
    _, default = capabilities(kind)[name]
    return getattr(obj, name, default)


def _from_protocol_stub(cls: type, name: str) -> bool:
    """Whether ``cls`` gets ``name`` only from a contract Protocol it inherits (a stub)."""
    for klass in cls.__mro__:
        if name in vars(klass):
            return bool(getattr(klass, "_is_protocol", False))
    return True


def _has_method(obj: object, name: str) -> bool:
    """For a class, looked up in its own MRO: every class is callable, its instances may not be."""
    if isinstance(obj, type) and _from_protocol_stub(obj, name):
        return False
    return callable(getattr(obj, name, None))


def _accepts(hint: Any, value: Any) -> bool:
    """A light isinstance against a capability's annotation (bool, int, tuple, callable|None)."""
    if isinstance(value, property):
        return True  # decided per instance
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:
        hint = origin
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is abc.Callable:
        return callable(value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    text = getattr(hint, "__name__", None) or str(hint)
    return text.replace("typing.", "").replace("collections.abc.", "")


def problems(kind: str, obj: object) -> list[str]:
    """What ``obj`` (a registered component) lacks to meet ``kind``'s contract; [] if none."""
    contract = CONTRACTS[kind]
    found: list[str] = []
    if not (isinstance(obj, type) or callable(obj) or callable(getattr(obj, "from_config", None))):
        found.append("it is neither a class nor a factory (nothing to build it with)")
    for name in contract.component:
        if not _has_method(obj, name):
            found.append(f"`{name}` is missing or not callable")
    if isinstance(obj, type) and not contract.built_by_factory:
        for name in contract.instance:
            if not _has_method(obj, name):
                what = "its instances are not callable" if name == "__call__" else None
                found.append(what or f"`{name}` is missing or not callable")
    for name, (hint, _) in capabilities(kind).items():
        value = getattr(obj, name, None)
        if value is not None and not _accepts(hint, value):
            found.append(f"`{name}` must be {_describe(hint)}, got {value!r}")
    for capability, protocol, methods in contract.implies:
        if getattr(obj, capability, None) is True:
            missing = [m for m in methods if not _has_method(obj, m)]
            if missing:
                found.append(
                    f"it declares `{capability}` but lacks {', '.join(f'`{m}`' for m in missing)}"
                    f" of {protocol.__module__}.{protocol.__name__}"
                )
    return found


def problem_line(kind: str, obj: object) -> str | None:
    """The one-line reason ``obj`` is broken as a ``kind`` component, or None."""
    found = problems(kind, obj)
    if not found:
        return None
    contract = CONTRACTS[kind]
    return f"it does not meet the {singular(kind)} contract ({contract.call}): " + "; ".join(found)
