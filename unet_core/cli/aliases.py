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


#: What each alias's ``--help`` lists under the reference's flags, after its own options.
REFERENCE_HELP: dict[str, list[tuple[str, str]]] = {
    "train3dunet": [("--config FILE", "The training config (the reference's only flag).")],
    "predict3dunet": [
        ("--config FILE", "The prediction config."),
        *(
            (
                f"{flag} {'VALUE' if flag in SINGLE_VALUED else 'V [V ...]'}",
                f"Same as --set {key}=...",
            )
            for flag, key in LEGACY_FLAGS.items()
        ),
    ],
}


def alias_help(alias: str, subcommand: str) -> str:
    """The subcommand's help under the alias's own name, plus the reference's flags it takes."""
    import click

    from unet_core.cli.main import cli

    command = cli.commands[subcommand]
    with click.Context(command, info_name=alias) as ctx:
        formatter = ctx.make_formatter()
        command.format_help(ctx, formatter)
        with formatter.section(f"Reference flags (pytorch-3dunet's {alias}, accepted as they are)"):
            formatter.write_dl(REFERENCE_HELP[alias])
        formatter.write_paragraph()
        formatter.write_text(f"{alias} is `unet {subcommand}` under the reference's name.")
        return formatter.getvalue()


def warn_if_shadowing(alias: str) -> None:
    """One line on stderr when pytorch-3dunet is importable here too: both install a script
    called ``alias``, and this one (unet-core's) is the one that runs."""
    import importlib.util

    try:
        present = importlib.util.find_spec("pytorch3dunet") is not None
    except (ImportError, ValueError):
        present = False
    if present:
        module = "train" if alias.startswith("train") else "predict"
        print(
            f"Warning: pytorch-3dunet is installed here too; this {alias} is unet-core's "
            f"(same flags). For the reference's, run: python -m pytorch3dunet.{module} "
            "--config FILE (docs/getting-started.md).",
            file=sys.stderr,
        )


def _run(subcommand: str, alias: str) -> None:
    from unet_core.cli.main import cli, main

    warn_if_shadowing(alias)
    if subcommand not in cli.commands:
        report(UsageError(f"`{subcommand}` is not yet available in this version of unet-core."))
        sys.exit(2)
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(alias_help(alias, subcommand), end="")
        sys.exit(0)
    try:
        args = translate(sys.argv[1:])
    except UsageError as exc:
        report(exc)
        sys.exit(exc.exit_code)
    main([subcommand, *args])


def train3dunet() -> None:
    """``train3dunet --config FILE``, as in pytorch-3dunet."""
    _run("train", "train3dunet")


def predict3dunet() -> None:
    """``predict3dunet --config FILE [--model_path ...]``, as in pytorch-3dunet."""
    _run("predict", "predict3dunet")
