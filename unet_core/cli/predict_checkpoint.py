"""``unet predict CHECKPOINT INPUT... -o OUT``: prediction without a config file.

A checkpoint written by ``unet train`` carries its training config. Its ``model`` section,
its dataset keys, the test-time transforms (``loaders.test``, else the validation phase's, which
hold no augmentation) and its patch shape are what prediction needs; the flags add the rest.
The same flags also work with ``--config``: both forms turn them into ``--set`` overrides, so
there is one meaning for each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unet_core.errors import CheckpointError, UsageError

if TYPE_CHECKING:
    from unet_core.config import ExperimentConfig
    from unet_core.prediction.output import Written

#: The grid keys a test-time slice builder keeps from a training one (no filtering at test time).
GRID_KEYS = ("patch_shape", "stride_shape", "halo_shape")


def flag_overrides(*, fast: bool, precision: str | None, postprocess: str | None) -> list[str]:
    """The ``--set`` overrides the prediction flags stand for."""
    out = []
    if fast:
        out.append("predictor.fast=true")
    if precision is not None:
        out.append(f"predictor.amp={precision}")
    if postprocess is not None:
        out.append(f"postprocessor.name={postprocess}")
    return out


def stored_config(checkpoint: str) -> dict[str, Any]:
    """The training config saved in ``checkpoint``, or one paragraph saying what to do."""
    from unet_core.engine.checkpoint import stored_config as saved_config

    return saved_config(
        checkpoint,
        "The model and the test-time transforms are unknown: predict with a config, unet "
        f"predict --config FILE --model {checkpoint}.",
    )


def prediction_config(
    checkpoint: str, inputs: Sequence[str], saved: Mapping[str, Any]
) -> dict[str, Any]:
    """A prediction config for ``inputs`` made of the training config ``saved``."""
    loaders = dict(saved.get("loaders") or {})
    test = _test_phase(checkpoint, loaders)
    test["file_paths"] = [str(p) for p in inputs]
    for phase in ("train", "val"):
        loaders.pop(phase, None)
    loaders.update(test=test, output_dir=None)
    predictor = saved.get("predictor") or {"name": "StandardPredictor"}
    return {
        "model": saved["model"],
        "model_path": str(checkpoint),
        "loaders": loaders,
        "predictor": predictor,
        "postprocessor": saved.get("postprocessor"),
    }


def _test_phase(checkpoint: str, loaders: Mapping[str, Any]) -> dict[str, Any]:
    """The saved test phase, or the validation phase's transforms with a plain patch grid."""
    if isinstance(loaders.get("test"), Mapping):
        return dict(loaders["test"])
    val = loaders.get("val")
    if not isinstance(val, Mapping):
        raise CheckpointError(
            f"The config stored in {checkpoint} has neither loaders.test nor loaders.val, so "
            "its test-time transforms are unknown. Predict with a config: unet predict "
            f"--config FILE --model {checkpoint}."
        )
    transformer = dict(val.get("transformer") or {})
    builder = dict(val.get("slice_builder") or {})
    grid = {k: builder[k] for k in GRID_KEYS if builder.get(k) is not None}
    if "patch_shape" in grid:  # half-patch steps: every voxel seen away from a patch border
        grid["stride_shape"] = [max(1, int(p) // 2) for p in grid["patch_shape"]]
    return {
        "slice_builder": {"name": "SliceBuilder", "skip_shape_check": True, **grid},
        "transformer": {"raw": transformer.get("raw") or []},
    }


@dataclass
class OutputTarget:
    """Where ``-o`` sends the outputs: one named file, or a folder of ``<stem>_predictions``."""

    path: Path | None
    format_name: str | None = None  # set when ``path`` names one output file
    overwrite: bool = False
    scratch: Path | None = None

    @property
    def single_file(self) -> bool:
        return self.format_name is not None

    def final_name(self, written: Path) -> Path:
        """The name an output written to the scratch folder gets (``OUT.h5``,
        ``OUT_segmentation.tif``)."""
        assert self.path is not None
        return _final_name(written, self.path)


def output_target(output: str | None, n_inputs: int, overwrite: bool) -> OutputTarget:
    """Read ``-o``: a path with a volume format's suffix names the one output file, anything
    else is a folder."""
    from unet_core import formats

    if output is None:
        return OutputTarget(None, overwrite=overwrite)
    found = formats.claim(output)
    if found is None:
        return OutputTarget(Path(output), overwrite=overwrite)
    if n_inputs != 1:
        raise UsageError(
            f"-o {output} names one {found[0]} file, but there are {n_inputs} inputs. Give a "
            "folder (-o DIR) for several inputs: each gets DIR/<input name>_predictions."
        )
    return OutputTarget(Path(output), format_name=found[0], overwrite=overwrite)


def with_target(cfg: ExperimentConfig, target: OutputTarget) -> ExperimentConfig:
    """``cfg`` writing where ``target`` says; a single file is first written to a private
    scratch folder beside it and moved into place by :func:`finish`."""
    from unet_core.engine.data import input_files
    from unet_core.io.scratch import _host
    from unet_core.prediction.output import NAMED_FILE_ADVICE, check_writable

    if target.path is None or cfg.loaders is None:
        return cfg
    folder = target.path
    predictor = cfg.predictor
    if target.single_file:
        assert target.format_name is not None
        _refuse_input_as_output(target.path, input_files(cfg, "test"))
        check_writable(target.path, target.overwrite, NAMED_FILE_ADVICE)  # before any work
        target.scratch = Path(
            tempfile.mkdtemp(
                prefix=f".{target.path.name}~unet-predict~{_host()}~{os.getpid()}~",
                dir=target.path.parent,
            )
        )
        folder = target.scratch
        predictor = predictor.with_params(output_format=target.format_name)
    loaders = cfg.loaders.model_copy(update={"output_dir": str(folder)})
    loaders.with_dataset_ref(cfg.loaders.dataset_ref)
    return cfg.model_copy(update={"loaders": loaders, "predictor": predictor})


def _refuse_input_as_output(output: Path, inputs: Sequence[str]) -> None:
    for source in inputs:
        if Path(source).resolve() == output.resolve():
            raise UsageError(
                f"-o {output} is the input file itself; unet-core never writes into an input. "
                "Choose another output name."
            )


def finish(target: OutputTarget, written: list[Written]) -> list[Written]:
    """Move a single file's outputs (and any sibling a single-array format wrote, e.g.
    ``x_predictions_segmentation.tif``) from the scratch folder to their names, durably."""
    from unet_core.io.atomic import durable_replace
    from unet_core.io.scratch import is_temporary

    if not target.single_file or target.scratch is None or target.path is None:
        return written
    try:
        moves = {
            entry: target.final_name(entry)
            for entry in sorted(target.scratch.iterdir())
            if not is_temporary(entry.name)
        }
        for final in moves.values():  # checked before the run too; here for a race
            if final != target.path and final.exists() and not target.overwrite:
                raise UsageError(
                    f"{final} already exists; pass --overwrite to replace it or choose "
                    "another -o name."
                )
        for entry, final in moves.items():
            durable_replace(entry, final)
        renamed = {str(entry): str(final) for entry, final in moves.items()}
        return [replace(item, path=renamed.get(item.path, item.path)) for item in written]
    finally:
        discard_scratch(target)


def discard_scratch(target: OutputTarget) -> None:
    """Remove the scratch folder (whatever an interrupted run left in it)."""
    if target.scratch is not None:
        shutil.rmtree(target.scratch, ignore_errors=True)
        target.scratch = None


def _final_name(written: Path, output: Path) -> Path:
    """``x_predictions.h5`` -> ``OUT.h5``; a sibling ``x_predictions_segmentation.tif`` ->
    ``OUT_segmentation.tif``."""
    rest = written.name.split("_predictions", 1)[1] if "_predictions" in written.name else ""
    extra = rest[: len(rest) - len(_suffix(written))]
    if not extra:
        return output
    suffix = _suffix(output)
    return output.with_name(f"{output.name[: len(output.name) - len(suffix)]}{extra}{suffix}")


def _suffix(path: Path) -> str:
    """The suffix of the format that claims ``path`` as written (``.ome.zarr``, ``.h5``)."""
    from unet_core import formats

    found = formats.claim(str(path))
    lowered = path.name.lower()
    if found is not None:
        for suffix in sorted(found[1].suffixes, key=len, reverse=True):
            if lowered.endswith(suffix):
                return path.name[len(path.name) - len(suffix) :]
    return path.suffix
