"""``unet train``: train a model from a YAML config (``train3dunet`` is the same command).

``--nproc N`` re-launches this command under ``torchrun --standalone --nproc_per_node=N``
(DDP on one machine); for several machines call torchrun yourself:
``torchrun --nnodes ... -m unet_core.cli.main train --config FILE``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from unet_core.cli.options import config_option, device_option, set_option
from unet_core.errors import UsageError

if TYPE_CHECKING:
    from unet_core.config import ExperimentConfig


@click.command("train")
@config_option(
    "YAML experiment config (optional with --resume: the checkpoint's config is used).",
    required=False,
)
@set_option("trainer.max_num_iterations=1000")
@click.option(
    "--resume",
    type=click.Path(dir_okay=False),
    help="Continue a run from its last_checkpoint.pytorch (model, optimizer, counters, RNG).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start over in a checkpoint_dir that holds another run: its files are moved to "
    "checkpoint_dir/previous-runs/<time>_<run id>/ first (never deleted).",
)
@click.option(
    "--nproc",
    type=click.IntRange(min=1),
    default=None,
    help="Processes (GPUs) on this machine: re-launches itself under torchrun (DDP).",
)
@device_option()
def train(
    config_path: str | None,
    overrides: tuple[str, ...],
    resume: str | None,
    overwrite: bool,
    nproc: int | None,
    device: str | None,
) -> None:
    """Train a U-Net: checkpoints, TensorBoard logs and progress go to trainer.checkpoint_dir.

    The folder belongs to one run (run.json, a lock while it trains): a new run into another
    run's folder refuses unless --resume continues that run or --overwrite starts over.
    """
    if config_path is None and resume is None:
        raise UsageError(
            "unet train needs --config FILE (or --resume CHECKPOINT to continue a run)."
        )
    from unet_core.cli.verbosity import progress_mode

    if progress_mode() == "none":  # unet -q: no progress bar or lines either
        overrides = (*overrides, "trainer.progress=none")
    cfg = _load(config_path, overrides, resume)
    if nproc is not None and nproc > 1 and "LOCAL_RANK" not in os.environ:
        _check_folder_before_launch(cfg, resume, overwrite)
        sys.exit(_relaunch(nproc, config_path, overrides, resume, device, overwrite))

    from unet_core.training.run import train as run_training

    trainer = run_training(cfg, resume=resume, device=device, overwrite=overwrite)
    if trainer.is_main:
        best = trainer.best_eval_score
        click.echo(
            f"Finished after {trainer.iteration} iterations ({trainer.stop_reason}); best "
            f"validation score {best:.4g}. Checkpoints: {trainer.checkpoint_dir}"
        )


def _load(
    config_path: str | None, overrides: tuple[str, ...], resume: str | None
) -> ExperimentConfig:
    from unet_core.config import config_from_dict, load_config

    if config_path is not None:
        return load_config(config_path, overrides)
    from unet_core.engine.checkpoint import stored_config

    assert resume is not None
    saved = stored_config(
        resume,
        f"Pass the config it was trained with: unet train --config FILE --resume {resume}.",
    )
    # no config given: the run continues in the checkpoint's own folder (--set may move it)
    trainer_section = dict(saved.get("trainer") or {})
    trainer_section["checkpoint_dir"] = os.path.dirname(os.path.abspath(resume))
    return config_from_dict({**saved, "trainer": trainer_section}, overrides)


def _check_folder_before_launch(cfg: ExperimentConfig, resume: str | None, overwrite: bool) -> None:
    """Refuse a taken run folder here, in one paragraph, before torchrun starts any rank.

    Rank 0 claims the folder again (and keeps it); this early claim only spares the user
    torchrun's failure report around the refusal (and does --overwrite's move once).
    """
    from unet_core.training.run_folder import claim, emit

    if cfg.trainer is None:  # the ranks report the missing section
        return
    resume_path = resume if resume is not None else cfg.trainer.resume
    folder = claim(Path(cfg.trainer.checkpoint_dir), resume=resume_path, overwrite=overwrite)
    emit(folder.notes)
    folder.release()


def torchrun_command(
    nproc: int,
    config_path: str | None,
    overrides: tuple[str, ...],
    resume: str | None,
    device: str | None,
    overwrite: bool = False,
) -> list[str]:
    """The torchrun command line that runs this same training in ``nproc`` processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += [f"--nproc_per_node={nproc}", "-m", "unet_core.cli.main", "train"]
    if config_path is not None:
        cmd += ["--config", config_path]
    for item in overrides:
        cmd += ["--set", item]
    if resume is not None:
        cmd += ["--resume", resume]
    if device is not None:
        cmd += ["--device", device]
    if overwrite:
        cmd.append("--overwrite")
    return cmd


def _relaunch(
    nproc: int,
    config_path: str | None,
    overrides: tuple[str, ...],
    resume: str | None,
    device: str | None,
    overwrite: bool,
) -> int:
    """Run torchrun as a child, forwarding SIGINT/SIGTERM; returns its exit code."""
    cmd = torchrun_command(nproc, config_path, overrides, resume, device, overwrite)
    click.echo("Launching: torchrun " + " ".join(cmd[3:]), err=True)
    child = subprocess.Popen(cmd)

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
