"""``train3dunet`` and ``predict3dunet``: the reference's command names, same flags."""

from __future__ import annotations

import sys

from unet_core.cli.errors import report
from unet_core.errors import UsageError

#: The reference's override flags and the ``--set`` key each one maps to.
LEGACY_FLAGS = {
    "--model_path": "model_path",
    "--loaders.output_dir": "loaders.output_dir",
    "--loaders.test.file_paths": "loaders.test.file_paths",
    "--loaders.test.slice_builder.patch_shape": "loaders.test.slice_builder.patch_shape",
    "--loaders.test.slice_builder.stride_shape": "loaders.test.slice_builder.stride_shape",
}


#: Flags that take one value; the others take one or more (nargs='+' in the reference).
SINGLE_VALUED = {"--model_path", "--loaders.output_dir"}


def translate(argv: list[str]) -> list[str]:
    """Map the reference's flags (``--model_path X``, list flags with several values) to ours."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, inline = arg.partition("=")
        if flag in LEGACY_FLAGS:
            values = [inline] if eq else []
            i += 1
            while not eq and i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            if not values:
                raise UsageError(f"{flag} needs a value.")
            single = flag in SINGLE_VALUED
            value = values[0] if single else "[" + ", ".join(values) + "]"
            out += ["--set", f"{LEGACY_FLAGS[flag]}={value}"]
            continue
        out.append(arg)
        i += 1
    return out


def _run(subcommand: str) -> None:
    from unet_core.cli.main import cli, main

    if subcommand not in cli.commands:
        report(UsageError(f"`{subcommand}` is not yet available in this version of unet-core."))
        sys.exit(2)
    try:
        args = translate(sys.argv[1:])
    except UsageError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    main([subcommand, *args])


def train3dunet() -> None:
    """``train3dunet --config FILE``, as in pytorch-3dunet."""
    _run("train")


def predict3dunet() -> None:
    """``predict3dunet --config FILE [--model_path ...]``, as in pytorch-3dunet."""
    _run("predict")
