"""A tiny network trained for a few iterations on the real nuclei volume, for the export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from test_train_support import reference_config, tiny

TINY_MODEL = {"f_maps": 4, "num_levels": 2, "num_groups": 2}


def train_tiny(folder: Path, iterations: int = 2, **model: Any) -> Path:
    """Train (in process) and return the best checkpoint; it stores its config."""
    from unet_core.config import config_from_dict
    from unet_core.training.run import train

    cfg = tiny(reference_config(folder / "checkpoints"), iterations=iterations, every=iterations)
    cfg["model"].update(TINY_MODEL, **model)
    torch.manual_seed(0)
    train(config_from_dict(cfg))
    return folder / "checkpoints" / "best_checkpoint.pytorch"
