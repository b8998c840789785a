"""The seam between a predictor and its inference backend (``predictor.backend``).

A predictor asks :func:`backend_forward` once for the forward pass of its run and hands it
to :class:`~unet_core.prediction.inference.PatchForward`; tiling, blending, TTA and outputs
stay the predictor's, whatever runs the network.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from unet_core.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from unet_core.registry import Spec

#: The backend when a predictor names none: the model runs in torch itself.
DEFAULT_BACKEND = "torch"


def backend_forward(
    spec: Spec | None,
    model: torch.nn.Module,
    device: torch.device,
    *,
    model_section: Mapping[str, Any] | None = None,
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``forward(x) -> y`` of the backend ``spec`` names (None: the torch path).

    The backend is refused on a device type it does not declare. ``model_section`` (the
    experiment's ``model`` section) is hashed with the weights into the key of a converted
    model (``model_key()``), so another final activation never reuses a conversion.
    """
    from unet_core import registry
    from unet_core.contracts import declared
    from unet_core.prediction.converted_models import model_digest

    name, config = registry.validate("backends", spec or DEFAULT_BACKEND)
    backend = registry.build(registry.get("backends", name), config)
    devices = declared("backends", backend, "devices")
    if devices is not None and device.type not in devices:
        raise ConfigError(
            f"predictor.backend: {name} runs on {' or '.join(devices)} only, but this "
            f"prediction runs on {device}. Predict on the CPU (--device cpu, or device: cpu) "
            "or use predictor.backend: torch on this device."
        )
    model.eval()
    section = dict(model_section) if model_section is not None else None
    digest: list[str] = []

    def model_key() -> str:
        """The digest, computed once and only if asked (the torch path never needs it)."""
        if not digest:
            digest.append(model_digest(model, section))
        return digest[0]

    forward: Callable[[torch.Tensor], torch.Tensor] | None = backend.prepare(
        model, device, model_key
    )
    return forward
