"""A run's progress and the decisions made from it: state.json (RunState), the epoch rows (metrics.jsonl and
.csv), the run's status (new, started, partial, finished), what a training into a folder does with what is
there (start, resume, refuse), clearing a folder for a new run, and refusing a folder of another format."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vpkit import __version__, provenance
from vpkit.atomic import (
    _json_default,
    json_safe,
    leftover_temp_files,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)
from vpkit.runs.files import (
    METRICS_CSV,
    METRICS_JSONL,
    PROVENANCE_FILE,
    RUN_FILE_PATTERNS,
    RUN_FILES,
    STATE_FILE,
    RunFolderError,
    json_or_error,
)


class RunFormatError(RunFolderError):
    """A run folder of another format version than this vpkit's (an earlier or a later vpkit made it)."""


def check_run_format(run_dir: str | Path) -> None:
    """Refuse a run folder that this vpkit did not write in its own format (provenance.FORMAT_VERSION): it is
    never read as if it were one, nor converted."""
    run_dir = Path(run_dir)
    try:
        record = provenance.read_record(run_dir)
    except provenance.ProvenanceError as error:
        raise RunFolderError(str(error)) from None
    version = (record or {}).get("format_version")
    if version == provenance.FORMAT_VERSION:
        return
    made_by = provenance.vpkit_label((((record or {}).get("sessions") or [{}])[-1]).get("environment") or {})
    by = f"vpkit {made_by}" if made_by else "the vpkit version that made it"
    if isinstance(version, int) and version > provenance.FORMAT_VERSION:
        raise RunFormatError(
            f"{run_dir}: made by a newer vpkit (run folder format {version}, this vpkit {__version__} reads "
            f"format {provenance.FORMAT_VERSION}); use {by}, or run it again here with --overwrite"
        )
    found = "no " + PROVENANCE_FILE if record is None else f"format {version}"
    raise RunFormatError(
        f"{run_dir}: made by an earlier vpkit ({found}; this vpkit {__version__} reads run folder format "
        f"{provenance.FORMAT_VERSION}); run it again with --overwrite, or use {by}"
    )


@dataclass
class RunState:
    """Training progress of a run; `epoch` is the last finished epoch (0 = none)."""

    config_hash: str
    epoch: int = 0
    best_epoch: int = 0
    best_selection: float = float("-inf")
    bad_epochs: int = 0
    stopped_early: bool = False
    finished: bool = False

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        if data["best_selection"] == float("-inf"):
            data["best_selection"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        data = dict(data)
        if data.get("best_selection") is None:
            data["best_selection"] = float("-inf")
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def write_state(run_dir: str | Path, state: RunState) -> None:
    write_json_atomic(Path(run_dir) / STATE_FILE, state.to_dict())


def read_state(run_dir: str | Path) -> RunState | None:
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return RunState.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, ValueError) as error:
        raise RunFolderError(
            f"{path}: unreadable run state ({error}); delete the run folder or use --overwrite"
        ) from error


def run_status(run_dir: str | Path) -> str:
    """'new' (no folder or empty), 'started' (no finished epoch), 'partial' or 'finished'."""
    run_dir = Path(run_dir)
    if not run_dir.exists() or not any(not path.name.startswith(".") for path in run_dir.iterdir()):
        return "new"  # hidden files are the lock, its owner record and temporary files, not a run
    state = read_state(run_dir)
    if state is None or state.epoch == 0:
        return "finished" if state is not None and state.finished else "started"
    return "finished" if state.finished else "partial"


def run_dir_action(run_dir: str | Path, resume: bool, overwrite: bool) -> str:
    """What a training into `run_dir` will do: 'new', 'resume' or 'finished'; changes nothing.

    An existing run is never overwritten without `overwrite`; `resume` continues a partial run.
    """
    run_dir = Path(run_dir)
    status = run_status(run_dir)
    if status == "new" or overwrite:
        return "new"
    if status != "started":  # a started run is begun again, whoever started it
        check_run_format(run_dir)
    if status == "finished":
        return "finished"
    if status == "partial":
        if not resume:
            raise RunFolderError(
                f"{run_dir}: a run is already here (stopped after epoch {read_state(run_dir).epoch}); "
                "pass --resume to continue it or --overwrite to start again"
            )
        return "resume"
    if not resume:  # started, no epoch finished
        raise RunFolderError(
            f"{run_dir}: a run started here but finished no epoch; pass --overwrite "
            "(or --resume) to start it again"
        )
    return "new"


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> str:
    """Make `run_dir` ready and say how to continue: 'new', 'resume' or 'finished' (see run_dir_action).

    A new run starts from an empty folder (the files of a replaced or never-finished run are removed), and the
    temporary files of killed writes are removed; call it while owning the folder (lock_run_dir).
    """
    run_dir = Path(run_dir)
    action = run_dir_action(run_dir, resume, overwrite)
    if action == "new" and run_dir.exists():
        clear_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_leftover_temp_files(run_dir)
    return action


def clear_run_dir(run_dir: Path) -> None:
    """Remove a run folder's run files (only those vpkit writes; other files are left alone)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in RUN_FILE_PATTERNS:
        for path in run_dir.glob(pattern):
            path.unlink()
    remove_leftover_temp_files(run_dir)


def remove_leftover_temp_files(run_dir: Path) -> list[Path]:
    """Remove the temporary files that killed writes of run files left (`.NAME.xxxx.tmp`); the paths removed.
    Only the folder's owner may call this: a live writer's temporary file looks the same."""
    removed = []
    for pattern in RUN_FILES + RUN_FILE_PATTERNS:
        for path in leftover_temp_files(run_dir, pattern):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def write_metrics(run_dir: str | Path, rows: list[dict]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from all epoch rows (atomic, so never half a row)."""
    run_dir = Path(run_dir)
    lines = "".join(json.dumps(json_safe(row), default=_json_default, allow_nan=False) + "\n" for row in rows)
    write_text_atomic(run_dir / METRICS_JSONL, lines)
    write_csv_atomic(run_dir / METRICS_CSV, pd.DataFrame(rows))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            rows.append(json_or_error(line, path, f", line {number}"))
    return rows
