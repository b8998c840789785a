"""How the CLI reports errors: one paragraph and an exit code for user errors."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Sequence

import click

from unet_core.errors import UserError


def _debug_requested(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("UNET_DEBUG", "") not in ("", "0")


def report(exc: UserError) -> None:
    """Print a user error as one paragraph on stderr."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, soft_wrap=True, highlight=False)
    # escaped: a message may quote brackets (`pip install 'unet-core[data]'`, YAML lists)
    console.print(f"[bold red]Error:[/] {escape(str(exc))}", markup=True)


def _one_line_warning(
    message: Warning | str, category: type[Warning], *_: object, **__: object
) -> str:
    return f"Warning: {message}\n"


def run_cli(group: click.Group, argv: Sequence[str] | None = None) -> None:
    """Run ``group`` and map UserError to its exit code without a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not _debug_requested(args):
        warnings.formatwarning = _one_line_warning  # notes for users, not source lines
    try:
        group.main(args=args, prog_name="unet", standalone_mode=False)
    except UserError as exc:
        if _debug_requested(args):
            traceback.print_exc()
        report(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    sys.exit(0)
