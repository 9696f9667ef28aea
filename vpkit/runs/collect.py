"""Reading run folders back (RunRecord: config, state, epoch rows, test metrics) and collecting the runs under a
folder into one table, a damaged folder named in its row rather than hiding the others."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vpkit.runs.files import CONFIG_FILE, PREDICTIONS_FILE, TEST_FILE, RunFolderError, json_or_error
from vpkit.runs.settings import read_config
from vpkit.runs.state import RunFormatError, RunState, read_metrics, read_state, run_status

# What collect_runs reports of test.json (as test_<key>); None there is a metric that could not be computed,
# and undefined_reason says why the test correlations could not be computed at all (e.g. constant scores).
TEST_SUMMARY_KEYS = (
    "srcc", "plcc", "krcc", "plcc_logistic4", "plcc_logistic5", "n_images", "undefined_reason"
)


@dataclass
class RunRecord:
    """Everything a finished or partial run folder says."""

    path: Path
    config: Any
    state: RunState | None
    metrics: pd.DataFrame
    test: dict | None

    @property
    def status(self) -> str:
        return run_status(self.path)


def read_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    return RunRecord(
        path=run_dir,
        config=read_config(run_dir),
        state=read_state(run_dir),
        metrics=pd.DataFrame(read_metrics(run_dir)),
        test=read_test(run_dir),
    )


def read_test(run_dir: str | Path) -> dict | None:
    """test.json of a run folder (None when it has none); a damaged one is named, with the fix."""
    path = Path(run_dir) / TEST_FILE
    if not path.is_file():
        return None
    test = json_or_error(path.read_text(), path)
    if not isinstance(test, dict):
        raise RunFolderError(f"{path}: damaged (not a JSON object); restore the file or rerun with --overwrite")
    return test


def read_predictions(run_dir: str | Path) -> pd.DataFrame:
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise RunFolderError(f"{path}: missing; the run has not been tested yet")
    return pd.read_csv(path)


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder (a folder with config.yaml) under `root`, sorted."""
    root = Path(root)
    return sorted(path.parent for path in root.rglob(CONFIG_FILE))


def _summary_row(record: RunRecord) -> dict:
    config = record.config
    row = {
        "run": str(record.path),
        "name": config.name,
        "number": config.number,
        "dataset": config.dataset.name,
        "prompt": config.prompt.type,
        "size": config.prompt.size,
        "mode": config.prompt.mode,
        "model": config.model.name_or_path,
        "status": record.status,
        "epochs_done": record.state.epoch if record.state else 0,
        "best_epoch": record.state.best_epoch if record.state else None,
    }
    if record.state and record.state.best_epoch and not record.metrics.empty:
        best = record.metrics[record.metrics["epoch"] == record.state.best_epoch]
        if not best.empty:
            for column in ("val_srcc", "val_plcc"):
                if column in best:
                    row[column] = float(best[column].iloc[0])
    test = record.test or {}
    for key in TEST_SUMMARY_KEYS:
        if key in test:
            row[f"test_{key}"] = test[key]
    return row


def _summary_row_or_problem(path: Path) -> dict:
    """A run's summary row; a damaged run folder gets status 'damaged' (one of another vpkit's format 'other
    format') and the reason in `problem`, so one bad folder does not hide the others."""
    from vpkit.config import ConfigError

    try:
        return _summary_row(read_run(path))
    except RunFormatError as error:
        return {"run": str(path), "name": path.name, "status": "other format", "problem": str(error)}
    except (RunFolderError, ConfigError, OSError, UnicodeDecodeError) as error:
        return {"run": str(path), "name": path.name, "status": "damaged", "problem": str(error)}


def collect_runs(runs: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run (config, progress, best validation and test metrics), for tables."""
    if isinstance(runs, (str, Path)):
        paths = find_runs(runs)
    else:
        paths = [Path(path) for path in runs]
    rows = [_summary_row_or_problem(path) for path in paths]
    frame = pd.DataFrame(rows)
    if "number" in frame and frame["number"].notna().any():  # only damaged folders: no number column
        frame = frame.sort_values(["number", "name"], na_position="last").reset_index(drop=True)
    return frame
