"""Error types the CLI prints as one paragraph, without a traceback.

Everything a user can cause (a bad config, a missing file, a broken plugin) raises a
:class:`UserError`; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``exit_code`` is what the CLI returns."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = _from_worker(message, type(self).__name__)
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} {hint}")


def _from_worker(message: str, name: str) -> str:
    """The original paragraph of an error raised in a DataLoader worker.

    torch re-raises a worker's exception in the main process as the same type built from
    "Caught X in DataLoader worker process N. Original Traceback ..."; users get the paragraph.
    """
    if not message.startswith(f"Caught {name} in DataLoader worker"):
        return message
    marker = f"{name}: "
    last = message.rstrip().rfind(marker)
    return message[last + len(marker) :].strip() if last >= 0 else message


class ConfigError(UserError):
    """The configuration (YAML, ``--set`` overrides or component parameters) is invalid."""

    exit_code = 2


class UsageError(UserError):
    """The command line itself is wrong."""

    exit_code = 2


class PluginError(UserError):
    """A component is unknown, broken, or registered twice."""

    exit_code = 2


class DataError(UserError):
    """An input file, dataset or array does not have what was expected."""


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable or does not match the configured model."""


class TrainingError(UserError):
    """Training cannot go on (e.g. the loss became NaN)."""


class DownloadError(UserError):
    """A public dataset could not be fetched, or what arrived is not what the catalogue lists."""


class ExportError(UserError):
    """A model cannot be exported faithfully (unmappable transform, parity check failed)."""


class ModelPackageError(UserError):
    """A bioimage.io model package is unreadable, inconsistent or not runnable here."""
