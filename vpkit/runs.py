"""Run folders: writing them atomically during training, reading them back, collecting many into a table.

A run folder holds

    config.yaml            the resolved config (what actually ran)
    metrics.csv/.jsonl     one row per finished epoch
    epoch-NN.safetensors   the prompt after epoch NN (paper key names; metadata: config hash, epoch, metrics)
    best.safetensors       the prompt of the best epoch
    state.json             progress: last finished epoch, best epoch, patience counter, finished flag
    trainer-state-NN.pt    optimizer, grad-scaler and RNG states after epoch NN, for an exact resume
    test.json              test metrics of the best prompt
    predictions.csv        name, mos, label, score on the test split

`state.json` is written last in each epoch, so a run killed at any point resumes from the last epoch
that `state.json` names.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from vpkit.atomic import (
    _json_default,
    atomic_replace,
    json_safe,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)

CONFIG_FILE = "config.yaml"
METRICS_CSV = "metrics.csv"
METRICS_JSONL = "metrics.jsonl"
STATE_FILE = "state.json"
BEST_CHECKPOINT = "best.safetensors"
TEST_FILE = "test.json"
PREDICTIONS_FILE = "predictions.csv"
RUN_FILES = (
    CONFIG_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    STATE_FILE,
    BEST_CHECKPOINT,
    TEST_FILE,
    PREDICTIONS_FILE,
)
# What collect_runs reports of test.json (as test_<key>); None there is a metric that could not be computed.
TEST_SUMMARY_KEYS = ("srcc", "plcc", "krcc", "plcc_logistic4", "plcc_logistic5", "n_images")
RUN_FILE_PATTERNS = ("epoch-*.safetensors", "trainer-state-*.pt")


class RunFolderError(RuntimeError):
    """A run folder is missing, incomplete, or would be overwritten."""


# ------------------------------------------------------------------------- atomic writes
# (the writers live in vpkit.atomic; they are re-exported here for the run-folder API)


def torch_save_atomic(path: str | Path, obj: Any) -> None:
    atomic_replace(path, lambda tmp: torch.save(obj, tmp))


# ------------------------------------------------------------------------- prompt checkpoints


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:02d}.safetensors"


def save_prompt_checkpoint(path: str | Path, state_dict: dict, metadata: dict) -> None:
    """Save a prompt state dict (paper key names) with string-encoded metadata, atomically."""
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in state_dict.items()}
    text_metadata = {
        key: value if isinstance(value, str) else json.dumps(json_safe(value), default=_json_default)
        for key, value in metadata.items()
    }
    atomic_replace(path, lambda tmp: save_file(tensors, tmp, metadata=text_metadata))


def prompt_checkpoint_metadata(config, prompter, epoch: int, metrics: dict, **extra) -> dict:
    """What a prompt checkpoint records: enough to rebuild the prompter and its model without config.yaml."""
    return {
        "format": "vpkit-prompt",
        "config_hash": config.hash(),
        "name": config.name,
        "epoch": epoch,
        "metrics": metrics,
        "prompt": prompter.spec(),
        "model": config.model.name_or_path,
        "dtype": config.model.dtype,
        "normalisation": config.model.normalisation,
        "score_type": config.model.score_type,
        "preprocess": config.dataset.preprocess,
        **extra,
    }


def load_prompt_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, metadata) of a prompt checkpoint; JSON metadata values are decoded."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: prompt checkpoint not found")
    if path.suffix in (".pth", ".pt", ".bin"):
        raise RunFolderError(f"{path}: a torch file, not a vpkit prompt checkpoint; make a run folder of it with "
                             f"`vpkit import-prompt {path} --experiment N --out DIR` and use that folder")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
        tensors = load_file(str(path))
    except SafetensorError as error:
        raise RunFolderError(
            f"{path}: not a readable safetensors prompt checkpoint ({error}); it is damaged or another "
            "format (a paper visual_prompt.pth goes through `vpkit import-prompt` first)"
        ) from None
    metadata = {}
    for key, value in raw.items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return tensors, metadata


# ------------------------------------------------------------------------- run state


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
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return "new"
    state = read_state(run_dir)
    if state is None or state.epoch == 0:
        return "finished" if state is not None and state.finished else "started"
    return "finished" if state.finished else "partial"


def prepare_run_dir(run_dir: str | Path, resume: bool, overwrite: bool) -> str:
    """Make `run_dir` ready and say how to continue: 'new', 'resume' or 'finished'.

    An existing run is never overwritten without `overwrite`; `resume` continues a partial run.
    """
    run_dir = Path(run_dir)
    status = run_status(run_dir)
    if status != "new" and overwrite:
        clear_run_dir(run_dir)
        status = "new"
    if status == "finished":
        return "finished"
    if status == "partial":
        if not resume:
            raise RunFolderError(
                f"{run_dir}: a run is already here (stopped after epoch {read_state(run_dir).epoch}); "
                "pass --resume to continue it or --overwrite to start again"
            )
        return "resume"
    if status == "started":
        if not (resume or overwrite):
            raise RunFolderError(
                f"{run_dir}: a run started here but finished no epoch; pass --overwrite "
                "(or --resume) to start it again"
            )
        clear_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return "new"


def clear_run_dir(run_dir: Path) -> None:
    """Remove a run folder's run files (only those vpkit writes; other files are left alone)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for pattern in RUN_FILE_PATTERNS:
        for path in run_dir.glob(pattern):
            path.unlink()


# ------------------------------------------------------------------------- epoch records


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
            rows.append(_json_or_error(line, path, f", line {number}"))
    return rows


def _json_or_error(text: str, path: Path, where: str = ""):
    """json.loads, with a damaged file named in the error (not just 'Expecting value: line 1 ...')."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise RunFolderError(
            f"{path}{where}: damaged JSON ({error.msg}); restore the file or rerun with --overwrite"
        ) from None


def write_config(run_dir: str | Path, config) -> None:
    write_text_atomic(Path(run_dir) / CONFIG_FILE, config.to_yaml())


def read_config(run_dir: str | Path):
    from vpkit.config import config_from_dict, load_yaml_file

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise RunFolderError(f"{path}: missing; {run_dir} is not a vpkit run folder")
    return config_from_dict(load_yaml_file(path), str(path))


# ------------------------------------------------------------------------- reading runs back


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
    test_path = run_dir / TEST_FILE
    return RunRecord(
        path=run_dir,
        config=read_config(run_dir),
        state=read_state(run_dir),
        metrics=pd.DataFrame(read_metrics(run_dir)),
        test=_json_or_error(test_path.read_text(), test_path) if test_path.is_file() else None,
    )


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
    """A run's summary row; a damaged run folder gets status 'damaged' and the reason in `problem`, so one bad
    folder does not hide the others."""
    from vpkit.config import ConfigError

    try:
        return _summary_row(read_run(path))
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
    if not frame.empty and frame["number"].notna().any():
        frame = frame.sort_values(["number", "name"], na_position="last").reset_index(drop=True)
    return frame


def copy_checkpoint(source: str | Path, target: str | Path) -> None:
    """Copy a checkpoint file atomically (best.safetensors from the best epoch's file)."""
    atomic_replace(target, lambda tmp: shutil.copyfile(source, tmp))


# ------------------------------------------------------------------------- importing the paper's prompts


def import_prompt(checkpoint: str | Path, out_dir: str | Path, config, overwrite: bool = False) -> Path:
    """Turn a released `visual_prompt.pth` into a run-like folder that `vpkit eval` and `vpkit score` use.

    `config` (an ExperimentConfig) says what the prompt is (prompt section, at prompt.image_size px)
    and which model and data it belongs to. The tensors are checked against that prompt shape.
    """
    from vpkit.prompters import build_prompter, load_prompt_state

    out_dir = Path(out_dir)
    if run_status(out_dir) != "new":
        if not overwrite:
            raise RunFolderError(f"{out_dir}: not empty; pass --overwrite to replace the run files there")
        clear_run_dir(out_dir)
    spec = config.prompt
    prompter = build_prompter(
        spec.type,
        size=spec.size,
        mode=spec.mode,
        delta=spec.delta,
        is_center=spec.is_center,
        image_size=spec.image_size,
    )
    load_prompt_state(
        prompter, Path(checkpoint)
    )  # raises with the checkpoint's real shape when it does not fit
    out_dir.mkdir(parents=True, exist_ok=True)
    write_config(out_dir, config)
    metadata = prompt_checkpoint_metadata(
        config, prompter, epoch=0, metrics={}, imported_from=str(Path(checkpoint).resolve())
    )
    save_prompt_checkpoint(out_dir / BEST_CHECKPOINT, prompter.state_dict(), metadata)
    write_state(out_dir, RunState(config_hash=config.hash(), finished=True))
    return out_dir
