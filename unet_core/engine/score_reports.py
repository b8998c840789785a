"""Where ``unet evaluate`` writes its JSON/CSV reports, without destroying anyone's file.

A report is only written over a file the user named (``--json``/``--csv``) or over an earlier
report of ``unet evaluate`` (recognised by its content). Never over one of the files it just
scored, never over anything else that happens to have the default name.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from unet_core.errors import DataError, UsageError


def _is_our_report(path: Path, columns: Sequence[str]) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if path.suffix == ".csv":
        return text.splitlines()[:1] == [",".join(columns)]
    try:
        data = json.loads(text)
    except ValueError:
        return False
    return isinstance(data, dict) and set(data) == {"scores"} and isinstance(data["scores"], list)


def check_targets(
    targets: Sequence[tuple[Path, bool, str]], inputs: Iterable[str], columns: Sequence[str]
) -> None:
    """``targets``: (path, named by the user, option). Refuse inputs, clashes, foreign files."""
    real_inputs = {os.path.realpath(p) for p in inputs}
    seen: dict[str, str] = {}
    for path, named, option in targets:
        real = os.path.realpath(path)
        if real in real_inputs:
            raise UsageError(
                f"The report {path} ({option}) is one of the files being scored; writing it "
                f"would destroy that file. Give {option} another path."
            )
        if real in seen:
            raise UsageError(
                f"{seen[real]} and {option} both name {path}; give the two reports different paths."
            )
        seen[real] = option
        if not named and path.exists() and not _is_our_report(path, columns):
            raise DataError(
                f"{path} already exists and is not a report of `unet evaluate`, so it is not "
                f"replaced. Name the report yourself with {option} PATH, or move that file."
            )


def write_reports(
    scores: Sequence[Any],
    json_path: Path | None,
    csv_path: Path | None,
    columns: Sequence[str] | None = None,
) -> None:
    """The scores as JSON (``{"scores": [records]}``) and CSV (one row per score), each
    written atomically (complete or not at all)."""
    from unet_core.io.atomic import write_text_atomic

    rows = [asdict(s) for s in scores]
    if json_path is not None:
        write_text_atomic(json_path, json.dumps({"scores": rows}, indent=2, allow_nan=False) + "\n")
    if csv_path is not None:
        names = list(columns) if columns is not None else list(rows[0]) if rows else []
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(csv_path, buffer.getvalue())
