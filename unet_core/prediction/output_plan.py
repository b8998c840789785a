"""Every input's output files, worked out before any work starts, and refused if shared.

Outputs are named after their input's stem (the reference's naming), so two inputs with one
stem (``a/vol.h5`` and ``b/vol.h5``, or ``vol.h5`` next to ``vol.hdf5``) would write one file.
unet-core refuses such a run up front, naming both inputs, instead of letting the second
prediction replace the first (``--overwrite`` does not change this). An output that is itself
an input is refused the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from unet_core.errors import ConfigError

Plan = list[tuple[str, list[Path]]]


def _key(path: str | os.PathLike[str]) -> str:
    return os.path.normcase(os.path.realpath(path))


def make_plan(inputs: Iterable[str], outputs_of: Callable[[str], Sequence[Path]]) -> Plan:
    return [(str(f), [Path(p) for p in outputs_of(str(f))]) for f in inputs]


#: How to resolve an output that is an input, for a folder of outputs and for ``-o FILE``.
FOLDER_ADVICE = (
    "This happens when a folder holds earlier predictions next to the volumes. Set "
    "loaders.output_dir to another folder, or move the earlier outputs out."
)
FILE_ADVICE = "Choose another -o name; --overwrite does not change this."


def check_plan(
    plan: Plan, *, key: str = "loaders.test.file_paths", advice: str = FOLDER_ADVICE
) -> None:
    """ConfigError naming both inputs when two inputs share an output, or an output is an
    input; ``advice`` ends the latter's message."""
    inputs = {_key(source): source for source, _ in plan}
    owner: dict[str, str] = {}
    for source, outputs in plan:
        for out in outputs:
            k = _key(out)
            if k in inputs:
                raise ConfigError(
                    f"The output {out} of the input {source} is itself an input in {key} "
                    f"({inputs[k]}); writing it would destroy that input. {advice}"
                )
            other = owner.setdefault(k, source)
            if _key(other) != _key(source):
                raise ConfigError(
                    f"Two inputs would write the same output {out}: {other} and {source} "
                    f"(outputs are named after the input's name without its extension). "
                    "Nothing was predicted; --overwrite does not change this. Rename one of "
                    "them, or predict them in separate runs with a different "
                    "loaders.output_dir for each folder."
                )


#: The arrays an output of ``unet predict`` may hold (the predictor's default names).
OUTPUT_ARRAYS = ("predictions", "segmentation")


def recorded_source(
    path: str | os.PathLike[str], arrays: tuple[str, ...] = OUTPUT_ARRAYS
) -> str | None:
    """The input an output of ``unet predict`` records (``unet_source`` on its arrays), if its
    format keeps array attributes and the file has one; None otherwise."""
    from unet_core import formats
    from unet_core.errors import UserError

    try:
        reader = formats.for_path(str(path)).open(str(path), primary=arrays[0], key="prediction")
    except (UserError, OSError):
        return None
    try:
        for name in arrays:
            try:
                value = reader.info(name).attrs.get("unet_source")
            except (UserError, OSError, KeyError):
                continue
            if value is not None:
                return value.decode() if isinstance(value, bytes) else str(value)
    finally:
        reader.close()
    return None


def without_own_outputs(plan: Plan) -> tuple[Plan, list[str]]:
    """Drop inputs that are another input's earlier output (a folder predicted into itself
    lists ``vol_predictions.h5`` next to ``vol.h5``), proven by the source it records."""
    producer = {_key(out): source for source, outputs in plan for out in outputs}
    kept: Plan = []
    dropped: list[str] = []
    for source, outputs in plan:
        owner = producer.get(_key(source))
        recorded = recorded_source(source) if owner is not None else None
        if owner is not None and recorded is not None and _key(recorded) == _key(owner):
            dropped.append(source)
        else:
            kept.append((source, outputs))
    return kept, dropped
