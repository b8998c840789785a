"""The options every command that reads a config shares: one spelling, one help style."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def config_option(
    what: str, *, dest: str = "config_path", required: bool = True
) -> Callable[[F], F]:
    """``-c/--config FILE``: the experiment YAML (``what`` says what it must hold)."""
    return click.option(
        "-c", "--config", dest, required=required, type=click.Path(dir_okay=False), help=what
    )


def set_option(example: str = "trainer.max_num_iterations=1000") -> Callable[[F], F]:
    """``--set KEY=VALUE`` (repeatable), parsed by :mod:`unet_core.config.overrides`."""
    return click.option(
        "--set",
        "overrides",
        multiple=True,
        metavar="KEY=VALUE",
        help=f"Override a config value (YAML-typed), e.g. --set {example}; repeatable.",
    )


def output_option(what: str, *, required: bool = False) -> Callable[[F], F]:
    """``-o/--output PATH``: where a command writes (``what`` says what PATH may be)."""
    return click.option("-o", "--output", "output", required=required, type=click.Path(), help=what)


def device_option() -> Callable[[F], F]:
    """``--device``: where the model runs, overriding the config's ``device`` key."""
    return click.option(
        "--device",
        default=None,
        metavar="DEVICE",
        help="cpu, cuda, cuda:N or mps (overrides the config's `device`; default: the best "
        "one present).",
    )
