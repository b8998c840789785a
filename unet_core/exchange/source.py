"""What an export starts from: a checkpoint, its config and the network in eval mode.

unet-core checkpoints store the experiment config they were trained with, so ``unet export
CHECKPOINT`` needs nothing else; a reference checkpoint (no config inside) needs ``--config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.errors import ExportError

if TYPE_CHECKING:
    import torch

    from unet_core.config.schema import ExperimentConfig


@dataclass
class ExportSource:
    """The network (eval mode, CPU), the config it came with and its model class."""

    model: torch.nn.Module
    config: ExperimentConfig
    model_class: type[Any]
    checkpoint: Path

    @property
    def model_spec(self) -> dict[str, Any]:
        """The config's model section, validated: ``{name, ...parameters}``."""
        return dict(self.config.model)

    @property
    def spatial_dims(self) -> int:
        return int(getattr(self.model, "spatial_dims", 3))

    @property
    def in_channels(self) -> int:
        return int(getattr(self.model, "in_channels", 1))

    @property
    def out_channels(self) -> int:
        return int(getattr(self.model, "out_channels", 1))

    def geometry(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(size step per spatial axis, receptive field per axis); (1.., 1..) when unknown."""
        from unet_core import registry

        name, config = registry.validate("models", self.model_spec)
        dims = self.spatial_dims
        multiple = getattr(self.model_class, "patch_multiple", None)
        field = getattr(self.model_class, "receptive_field", None)
        step = tuple(multiple(config)) if callable(multiple) else (1,) * dims
        rf = tuple(field(config)) if callable(field) else (1,) * dims
        return step, rf


def load_export_source(
    checkpoint: str | Path, config_path: str | Path | None = None
) -> ExportSource:
    """The checkpoint's network with the config stored in it (or the one given)."""
    from unet_core import registry
    from unet_core.config import as_config, config_from_dict
    from unet_core.engine.checkpoint import load_checkpoint, load_model_weights

    ckpt = load_checkpoint(checkpoint)
    if config_path is not None:
        cfg = as_config(Path(config_path))
    elif isinstance(ckpt.get("config"), dict):
        cfg = config_from_dict(ckpt["config"])
    else:
        raise ExportError(
            f"Checkpoint {str(checkpoint)!r} holds no config (it was not written by `unet "
            "train`, e.g. it is a pytorch-3dunet checkpoint), so the model it belongs to is "
            "unknown. Pass the training config with --config FILE."
        )
    model = registry.create("models", cfg.model)
    load_model_weights(model, ckpt, model_config=cfg.model, source=str(checkpoint))
    model.eval()
    name, _ = registry.validate("models", dict(cfg.model))
    return ExportSource(model, cfg, registry.get("models", name), Path(checkpoint))
