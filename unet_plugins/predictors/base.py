"""What every built-in predictor takes from its context (see unet_core.interfaces.Predictor)."""

from __future__ import annotations

from typing import Any

from unet_core import interfaces


class PredictorBase(interfaces.Predictor):
    """Keeps the run context: where outputs go, the postprocessor, and the test loader's
    ``batch_size``/``num_workers`` from the experiment's ``loaders`` section."""

    def __init__(
        self,
        config: Any,
        *,
        model: Any,
        device: Any,
        output_dir: str | None = None,
        experiment: Any = None,
        postprocessor: Any = None,
        overwrite: bool = False,
    ) -> None:
        self.config = config
        self.model = model
        self.device = device
        self.output_dir = output_dir or None
        self.experiment = experiment
        self.postprocessor = postprocessor
        self.overwrite = overwrite or config.overwrite
        loaders = getattr(experiment, "loaders", None)
        self.num_workers = int(getattr(loaders, "num_workers", 0) or 0)
        self.loader_batch = int(getattr(loaders, "batch_size", 1))

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> Any:
        return cls(config, **context)
