"""The `unet` CLI run inside the test process (no new interpreter, no new torch import)."""

from __future__ import annotations

from typing import Any


def run_here(capsys: Any, *args: str) -> tuple[int, str, str]:
    """Run ``unet ARGS`` through the console script's own entry point: (exit code, out, err)."""
    from unet_core.cli.errors import run_cli
    from unet_core.cli.main import cli

    try:
        run_cli(cli, list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
