"""``unet models summary``: size, receptive field, valid patches and memory of a model.

Works with any registered model: numbers every ``nn.Module`` has (parameters, output shape,
activation memory) are measured on the ``meta`` device, so nothing is allocated and a
100M-parameter network is summarised in a second. Model-specific facts (receptive field,
patch multiple, patch check) come from optional classmethods of the same names; models that
lack them show "n/a".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from unet_core.cli.options import config_option, set_option
from unet_core.errors import ConfigError, UsageError

if TYPE_CHECKING:
    import torch
    from pydantic import BaseModel

    from unet_core.config import ComponentRef, ExperimentConfig, PhaseConfig

    ComponentSpec = Mapping[str, Any] | ComponentRef[BaseModel]

MiB = 2**20


@click.group()
def models() -> None:
    """Inspect models: parameters, receptive field, patch sizes, memory."""


@models.command("summary")
@config_option("Experiment YAML whose model to summarise.", dest="config_file", required=False)
@click.option("--name", help="Model name (e.g. UNet3D) when no --config is given.")
@set_option("model.f_maps=32 (with --name: f_maps=32)")
@click.option("--patch", nargs=3, type=int, metavar="Z Y X", help="Patch (default: the config's).")
@click.option("--batch", default=1, show_default=True, type=int, help="Batch size for memory.")
def summary(
    config_file: str | None,
    name: str | None,
    overrides: tuple[str, ...],
    patch: tuple[int, int, int] | None,
    batch: int,
) -> None:
    """Parameters, receptive field, valid patch sizes and activation memory of a model."""
    spec, config_patch = _model_spec(config_file, name, overrides)
    patch_shape = list(patch or config_patch or ())
    report = describe_model(spec, patch_shape or None, batch=batch)
    click.echo(format_report(report))


# -- inputs ---------------------------------------------------------------------------------------
def _model_spec(
    config_file: str | None, name: str | None, overrides: Sequence[str]
) -> tuple[ComponentSpec, tuple[int, ...] | None]:
    """The model section (with --set applied) and the config's training patch, if any.

    ``--set`` items use the config's one override parser; with ``--config`` they go through
    ``load_config`` (``model.`` prefixed), so the model section is validated once, there.
    """
    from unet_core.config.overrides import parse_override

    model_keys = [item.removeprefix("model.") for item in overrides]
    if config_file:
        from unet_core.config import load_config

        renamed = [f"name={name}"] if name else []
        cfg = load_config(config_file, [f"model.{item}" for item in [*renamed, *model_keys]])
        return cfg.model, _train_patch(cfg)
    if not name:
        raise UsageError(
            "Give --config FILE or --name MODEL (e.g. --name UNet3D --set in_channels=1)."
        )
    spec: dict[str, Any] = {"name": name, "in_channels": 1, "out_channels": 1}
    for item in model_keys:
        path, value = parse_override(item)
        spec[".".join(str(p) for p in path)] = value
    return spec, None


def _train_patch(cfg: ExperimentConfig) -> tuple[int, ...] | None:
    loaders = cfg.loaders
    for phase in ("train", "test", "val"):
        section: PhaseConfig | None = getattr(loaders, phase) if loaders is not None else None
        shape = section.patch_shape if section is not None else None
        if shape:
            return shape
    return None


# -- measurements ---------------------------------------------------------------------------------
def describe_model(
    spec: ComponentSpec, patch_shape: Sequence[int] | None, *, batch: int = 1
) -> dict[str, Any]:
    """Everything ``summary`` prints, as a dict (also used by benchmarks and tests)."""
    import torch

    from unet_core import registry
    from unet_core.contracts import declared

    name, config = registry.validate("models", spec)
    cls = registry.get("models", name)
    with torch.device("meta"):
        model = registry.build(cls, config)
    dims = int(declared("models", model, "spatial_dims"))
    params = sum(p.numel() for p in model.parameters())
    report: dict[str, Any] = {
        "name": name,
        "spatial_dims": dims,
        "parameters": params,
        "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "receptive_field": _optional(cls, "receptive_field", config),
        "patch_multiple": _optional(cls, "patch_multiple", config),
    }
    if patch_shape is None:
        patch_shape = [1, 256, 256] if dims == 2 else [64, 64, 64]
    report["patch"] = list(patch_shape)
    check = declared("models", cls, "check_patch_shape")
    problem = check(config, patch_shape) if check is not None else None
    if problem:
        raise ConfigError(f"{problem}.")
    advice = check(config, patch_shape, strict=True) if check is not None else None
    report["patch_advice"] = advice
    spatial = list(patch_shape)[-dims:]
    x = torch.empty(batch, int(getattr(model, "in_channels", 1)), *spatial, device="meta")
    report.update(activation_memory(model, x))
    return report


def _optional(cls: Any, method: str, config: Any) -> Any:
    fn = getattr(cls, method, None)
    return list(fn(config)) if callable(fn) else None


def activation_memory(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Inference peak and training activations for input ``x`` (meta tensors are fine).

    Inference: the peak of live op outputs in ``no_grad`` eval mode. Training: every tensor
    autograd saves for backward (parameters excluded) plus twice the largest activation, the
    transient gradient buffers of backward.
    """
    import torch

    model.eval()
    with torch.no_grad(), _LiveBytes() as live:
        out = model(x)
    model.train()
    saved: dict[int, torch.Tensor] = {}
    param_ids = {id(p) for p in model.parameters()}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in param_ids:
            saved[id(t)] = t
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    saved_bytes = sum(t.numel() * t.element_size() for t in saved.values())
    return {
        "input_shape": list(x.shape),
        "output_shape": list(out.shape),
        "inference_bytes": live.peak,
        "largest_activation_bytes": live.largest,
        "training_saved_bytes": saved_bytes,
        "training_bytes": saved_bytes + 2 * live.largest,
    }


class _LiveBytes:
    """Tracks the bytes of live op outputs (views and in-place results not counted twice)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self

        class Mode(TorchDispatchMode):  # type: ignore[no-untyped-call]
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                out = func(*args, **(kwargs or {}))
                if not (func._schema.is_mutable or func.is_view):
                    tracker.record(out, args, kwargs)
                return out

        self.mode = Mode()  # type: ignore[no-untyped-call]
        self.live = self.peak = self.largest = 0

    def record(self, out: Any, args: Any, kwargs: Any) -> None:
        import weakref

        import torch
        from torch.utils._pytree import tree_flatten

        inputs = {id(a) for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in inputs:
                n = t.numel() * t.element_size()
                self.live += n
                self.peak = max(self.peak, self.live)
                self.largest = max(self.largest, n)
                weakref.finalize(t, self._free, n)

    def _free(self, n: int) -> None:
        self.live -= n

    def __enter__(self) -> _LiveBytes:
        self.mode.__enter__()  # type: ignore[no-untyped-call]
        return self

    def __exit__(self, *exc: object) -> None:
        self.mode.__exit__(*exc)  # type: ignore[no-untyped-call]


# -- output ---------------------------------------------------------------------------------------
def _x(values: Sequence[int] | None) -> str:
    return " x ".join(str(v) for v in values) if values else "n/a"


def _mib(n: int) -> str:
    return f"{n / MiB:,.1f} MiB"


def valid_sizes(multiple: int, around: int, count: int = 3) -> list[int]:
    """Multiples of ``multiple`` nearest to ``around`` (at least ``multiple``)."""
    base = max(1, round(around / multiple))
    picks = {max(1, base + d) * multiple for d in range(-count, count + 1)}
    return sorted(picks, key=lambda v: (abs(v - around), v))[:count]


def format_report(r: Mapping[str, Any]) -> str:
    """The summary as aligned lines."""
    params, pbytes = r["parameters"], r["parameter_bytes"]
    mult = r.get("patch_multiple")
    spatial = r["patch"][-r["spatial_dims"] :]
    lines = [
        ("Model", f"{r['name']} ({r['spatial_dims']}D)"),
        ("Parameters", f"{params:,} ({_mib(pbytes)} fp32; +{_mib(3 * pbytes)} grads + Adam)"),
        ("Receptive field", f"{_x(r.get('receptive_field'))} voxels"),
    ]
    if mult:
        near = _x([valid_sizes(m, n)[0] for m, n in zip(mult, spatial)])
        options = "; ".join(
            f"{axis}: {', '.join(map(str, sorted(valid_sizes(m, n))))}"
            for axis, m, n in zip("zyx"[-len(mult) :], mult, spatial)
        )
        lines.append(("Patch multiple", f"{_x(mult)} per axis (nearest valid patch {near})"))
        lines.append(("Valid sizes", options))
    out_shape = r["output_shape"]
    lines += [
        ("Input", _x(r["input_shape"])),
        ("Output", _x(out_shape)),
        ("Forward memory", f"~{_mib(r['inference_bytes'])} activations (eval, no_grad)"),
        (
            "Training memory",
            f"~{_mib(r['training_bytes'])} activations + {_mib(4 * pbytes)} weights/grads/Adam",
        ),
    ]
    if r.get("patch_advice"):
        lines.append(("Note", r["patch_advice"]))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)


def _add_zoo_commands() -> None:
    from unet_core.cli.model_zoo import list_models, pull

    models.add_command(pull)
    models.add_command(list_models)


_add_zoo_commands()
