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
    data.json              what the run trained on: dataset, root, layout, split, fingerprints of the image list
                           and of the image files' bytes
    data-images.csv        that image list: name, split, label and file_digest of every image the run used
    provenance.json        the folder's format version, and who made it: vpkit, torch, CUDA, host, device,
                           the model's and the data's source, start and end of each session (vpkit.provenance)
    .vpkit.lock            the OS lock of the process that owns the folder (.vpkit-owner.json says who)

`state.json` is written last in each epoch, so a run killed at any point resumes from the last epoch
that `state.json` names.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from filelock import FileLock, Timeout
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as safetensors_bytes

from vpkit import __version__, provenance
from vpkit.atomic import (
    _json_default,
    atomic_replace,
    json_safe,
    leftover_temp_files,
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
DATA_FILE = "data.json"
DATA_IMAGES_FILE = "data-images.csv"
PROVENANCE_FILE = provenance.RECORD_FILE
RUN_FILES = (
    CONFIG_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    STATE_FILE,
    BEST_CHECKPOINT,
    TEST_FILE,
    PREDICTIONS_FILE,
    DATA_FILE,
    DATA_IMAGES_FILE,
    PROVENANCE_FILE,
)
# What collect_runs reports of test.json (as test_<key>); None there is a metric that could not be computed,
# and undefined_reason says why the test correlations could not be computed at all (e.g. constant scores).
TEST_SUMMARY_KEYS = (
    "srcc", "plcc", "krcc", "plcc_logistic4", "plcc_logistic5", "n_images", "undefined_reason"
)
RUN_FILE_PATTERNS = ("epoch-*.safetensors", "trainer-state-*.pt")
LOCK_FILE = ".vpkit.lock"
OWNER_FILE = ".vpkit-owner.json"


class RunFolderError(RuntimeError):
    """A run folder is missing, incomplete, or would be overwritten."""


class RunFolderBusy(RunFolderError):
    """Another process owns the run folder."""


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

# ------------------------------------------------------------------------- owning a run folder

_held: dict[Path, int] = {}  # run folders this process owns -> nesting depth (a lock taken again is a no-op)


@contextlib.contextmanager
def lock_run_dir(run_dir: str | Path, *,
                 busy_fix: str = "wait for it to finish, or use another run folder (--out)") -> Iterator[Path]:
    """Own `run_dir` while the block runs: nothing else may write it meanwhile.

    An OS file lock (`.vpkit.lock` inside the folder) that the OS releases when the process dies, so a killed
    run never leaves a stale lock. A second owner fails at once with RunFolderBusy naming the first (pid, host,
    command, from `.vpkit-owner.json`) and what to do (`busy_fix`). The folder is made when missing; if the block
    then leaves nothing in it (a start that failed before writing anything), the folders made here are removed
    again.
    """
    run_dir = Path(run_dir)
    key = run_dir.absolute()
    if key in _held:
        _held[key] += 1
        try:
            yield run_dir
        finally:
            _held[key] -= 1
        return
    made = _make_run_dir(run_dir)
    lock = FileLock(str(run_dir / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunFolderBusy(f"{run_dir}: in use by {_owner_text(run_dir)}; {busy_fix}") from None
    try:
        write_json_atomic(run_dir / OWNER_FILE, _owner_record())
        _held[key] = 1
        yield run_dir
    finally:
        _held.pop(key, None)
        (run_dir / OWNER_FILE).unlink(missing_ok=True)
        if made and {path.name for path in run_dir.iterdir()} <= {LOCK_FILE}:
            (run_dir / LOCK_FILE).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                for folder in made:  # innermost first; stops at the first that is not empty
                    folder.rmdir()
        lock.release()


def _make_run_dir(run_dir: Path) -> list[Path]:
    """Make `run_dir` (and missing parents); the folders made, innermost first."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"{run_dir}: is a file, not a folder; give another run folder (--out)")
    made, folder = [], run_dir
    while not folder.exists() and folder != folder.parent:
        made.append(folder)
        folder = folder.parent
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(
            f"{run_dir}: cannot make the run folder ({error.strerror or error}); give another run folder (--out)"
        ) from None
    return made


def _owner_record() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python",
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _owner_text(run_dir: Path) -> str:
    try:
        owner = json.loads((run_dir / OWNER_FILE).read_text())
        return f"pid {owner['pid']} on {owner['host']} (`{owner['command']}`, since {owner['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not recorded who it is yet)"


# ------------------------------------------------------------------------- atomic writes
# (the writers live in vpkit.atomic; they are re-exported here for the run-folder API)


def torch_save_atomic(path: str | Path, obj: Any) -> None:
    atomic_replace(path, lambda tmp: torch.save(obj, tmp))


# ------------------------------------------------------------------------- prompt checkpoints


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:02d}.safetensors"


def save_prompt_checkpoint(path: str | Path, state_dict: dict, metadata: dict) -> None:
    """Save a prompt state dict (paper key names) with string-encoded metadata, atomically.

    The same prompt and metadata give the same bytes, so checkpoints can be compared by hash."""
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in state_dict.items()}
    text_metadata = {
        key: value if isinstance(value, str) else json.dumps(json_safe(value), default=_json_default, sort_keys=True)
        for key, value in metadata.items()
    }
    blob = _sorted_metadata(safetensors_bytes(tensors, metadata=text_metadata))
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(blob))


def _sorted_metadata(blob: bytes) -> bytes:
    """A safetensors file with its header's metadata keys sorted.

    safetensors keeps the metadata in a Rust HashMap, which writes its keys in another order in every process
    (the tensors are already sorted). The data offsets count from the end of the header, so only the header
    changes; it stays padded with spaces to a multiple of 8 bytes, as safetensors writes it."""
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + length :]


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


def prompt_spec_of(config) -> dict:
    """The prompter spec (as in a checkpoint's metadata) of a run config's prompt section."""
    from vpkit.prompters import prompter_from_config

    return prompter_from_config(config.prompt).spec()


def check_checkpoint_matches(path: str | Path, metadata: dict, prompt_spec: dict, config_hash: str | None) -> None:
    """Refuse a prompt checkpoint that belongs to another run than the one it is loaded for.

    `prompt_spec` is the run's prompter spec (type, size, mode, delta, is_center, image_size); `config_hash`
    the hash its state.json records (None: not compared), written by the same vpkit as its checkpoints, so a
    vpkit upgrade that changes how configs hash does not disown them. Checkpoints without that metadata are
    not judged here."""
    recorded = metadata.get("prompt")
    if isinstance(recorded, dict):
        for key, expected in prompt_spec.items():
            if key in recorded and recorded[key] != expected:
                raise RunFolderError(
                    f"{path}: a prompt of another run (prompt {key} {recorded[key]!r} in the file, "
                    f"{expected!r} in the run's config); put this run's own checkpoint back, or retrain "
                    "with --overwrite"
                )
    recorded_hash = metadata.get("config_hash")
    if config_hash is not None and recorded_hash is not None and recorded_hash != config_hash:
        raise RunFolderError(
            f"{path}: a prompt of another run (config hash {recorded_hash} in the file, {config_hash} for the "
            "run's config); put this run's own checkpoint back, or retrain with --overwrite"
        )


def load_checkpoint_tensors(prompter, path: str | Path, state_dict: dict, run_dir: str | Path | None = None):
    """Load the tensors of the prompt checkpoint `path` into `prompter`, which was built from what the file's
    metadata (and its run `run_dir`, if any) say it holds. Tensors of another shape or type than that are refused
    naming the file and what a command-line user can do about it."""
    from vpkit.prompters import PromptStateError, load_prompt_state

    try:
        return load_prompt_state(prompter, state_dict, label=str(path))
    except PromptStateError as error:
        retrain = (f"put the run's own checkpoint back or train the run again (`vpkit train {Path(run_dir) / CONFIG_FILE}"
                   f" --out {run_dir} --overwrite`), or " if run_dir is not None else "")
        raise PromptStateError(
            f"{error.what}: the file's tensors are not the prompt its metadata describes, so it was replaced or "
            "damaged",
            f"{retrain}import the tensors as what they are (`vpkit import-prompt {path} --type TYPE --size N "
            "--image-size PX --out NEW_RUN`)",
        ) from None


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
    check_run_format(run_dir)  # every reader of a run folder (resume, reuse, eval, tables) comes through here
    return config_from_dict(load_yaml_file(path), str(path))


@dataclass(frozen=True)
class RunComparison:
    """A run folder's recorded config beside the config that would run there now."""

    recorded: Any  # the ExperimentConfig in config.yaml
    recorded_hash: str  # the config hash the run was started under (state.json's; config.yaml's before a state)
    expected: Any  # the config asked for, resolved as training resolves it

    @property
    def same(self) -> bool:
        """The folder holds a run of these settings (operational fields, such as the device, aside)."""
        return self.expected.hash() == self.recorded_hash

    def changed(self) -> list[tuple[str, str | None]]:
        return changed_settings(self.recorded, self.expected)


def compare_with_run(run_dir: str | Path, config, device: str, image_size: int | None = None) -> RunComparison:
    """Is the run recorded in `run_dir` a run of `config` on `device`? `config` is first resolved as training
    resolves it (vpkit.config.resolve_for_model: the precision `device` uses, the prompt size at `image_size`,
    the model's input size; by default the one the run recorded, for callers that have no model loaded)."""
    from vpkit.config import resolve_for_model

    recorded, state = read_config(run_dir), read_state(run_dir)
    # state.json's hash, not one of config.yaml read back: a config.yaml that lacks a setting added since reads
    # back with today's default, which the run did not use
    recorded_hash = recorded.hash() if state is None else state.config_hash
    size = recorded.prompt.image_size if image_size is None else image_size
    return RunComparison(recorded, recorded_hash, resolve_for_model(config, size, device)[0])


def other_settings_message(run_dir: str | Path, recorded, config) -> str:
    """Why the run recorded in `run_dir` (its config `recorded`) is not a run of `config`, and what to do."""
    changed = "; ".join(config_differences(recorded, config))
    edited = edited_config_hash(run_dir, recorded)
    if edited is not None:
        return (f"{run_dir}: its config.yaml was changed after the run recorded it (its settings hash to "
                f"{recorded.hash()}, but the run and its checkpoints were made with {edited}: edited by hand?), so "
                "what the run trained with is unknown" + (f"; the command differs from it too ({changed})" if changed
                                                          else "")
                + "; undo the edit to continue the run, or train it again with --overwrite (or into another --out)")
    return (f"{run_dir}: holds a run of other settings ({changed or 'none visible'}); "
            "use the same settings, another --out, or --overwrite to start again")


def edited_config_hash(run_dir: str | Path, recorded) -> str | None:
    """The config hash a run recorded (state.json) when its config.yaml (read as `recorded`) no longer hashes to
    it: the file was edited after the run started. None when it does, or with no state.json yet."""
    state = read_state(run_dir)
    if state is None or state.config_hash == recorded.hash():
        return None
    return state.config_hash


def changed_settings(old, new) -> list[tuple[str, str | None]]:
    """(section, key) of each setting in the config hash that differs between two configs; (name, None) for a
    top-level value. Operational settings (device, workers, cache, data root) are not part of a run's identity."""
    from vpkit.config import OPERATIONAL_FIELDS

    old_dict, new_dict = old.to_dict(), new.to_dict()
    changed = []
    for section, values in new_dict.items():
        if isinstance(values, dict):
            changed += [(section, key) for key, value in values.items()
                        if old_dict[section].get(key) != value and key not in OPERATIONAL_FIELDS.get(section, ())]
        elif old_dict.get(section) != values:
            changed.append((section, None))
    return changed


def config_differences(old, new) -> list[str]:
    """'section.key: old -> new' for each setting in the config hash that differs."""
    old_dict, new_dict = old.to_dict(), new.to_dict()
    lines = []
    for section, key in changed_settings(old, new):
        if key is None:
            lines.append(f"{section}: {old_dict.get(section)!r} -> {new_dict[section]!r}")
        else:
            lines.append(f"{section}.{key}: {old_dict[section].get(key)!r} -> {new_dict[section][key]!r}")
    return lines


# ------------------------------------------------------------------------- what a run trained on

SPLITS = ("train", "val", "test")
NAMED_FILES = 3  # image files with other contents named in a refusal; the rest are counted


def data_images(frame: pd.DataFrame, digests: list[str] | None = None) -> pd.DataFrame:
    """The image list that identifies a run's data: name, split, label, sorted (no paths: a moved copy of a
    dataset is the same data), and with `digests` (vpkit.preflight.check_images, in `frame`'s row order) each
    file's fingerprint as `file_digest`."""
    columns = frame[["name", "split", "label"]]
    if digests is not None:
        columns = columns.assign(file_digest=list(digests))
    return columns.sort_values(["split", "name"]).reset_index(drop=True)


def images_fingerprint(images: pd.DataFrame) -> str:
    rows = images[["name", "split", "label"]].itertuples(index=False)
    lines = "".join(f"{name}\t{split}\t{float(label)!r}\n" for name, split, label in rows)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def files_fingerprint(images: pd.DataFrame) -> str:
    """One digest of every image file's contents (the `file_digest` column), by name."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(zip(images["name"], images["file_digest"])))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def data_record(table, config, digests: list[str] | None = None) -> dict:
    """What a run trains on: dataset, root, layout, split scheme, images per split and a fingerprint of the
    image list (`data_images`) as a whole and per split; with `digests`, also of the files' contents."""
    images = data_images(table.frame, digests)
    record = {
        "dataset": table.dataset,
        "root": str(Path(config.dataset.root).expanduser().resolve()),
        "layout": table.layout,
        "split": config.dataset.split,
        "split_source": table.split_source,
        "limit": config.train.limit,
        "images": {split: int((images["split"] == split).sum()) for split in SPLITS},
        "fingerprint": images_fingerprint(images),
        "split_fingerprints": {
            split: images_fingerprint(images[images["split"] == split]) for split in SPLITS
        },
    }
    if digests is not None:
        from vpkit.preflight import FILE_DIGEST

        record["file_digest"] = FILE_DIGEST
        record["files_fingerprint"] = files_fingerprint(images)
    return record


def write_data_record(run_dir: str | Path, record: dict, images: pd.DataFrame) -> None:
    write_csv_atomic(Path(run_dir) / DATA_IMAGES_FILE, images)
    write_json_atomic(Path(run_dir) / DATA_FILE, record)


def read_data_record(run_dir: str | Path) -> dict | None:
    """data.json of a run folder (None for one that records no data: an imported prompt)."""
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise RunFolderError(f"{path}: unreadable ({error}); delete it to accept the data as it is now") from None


def check_same_data(run_dir: str | Path, record: dict, images: pd.DataFrame) -> str | None:
    """Refuse to continue (or report) the run in `run_dir` on other data than it was trained on, listing the
    difference: other images, splits or labels, and (when both `record` and the run's record fingerprint the
    files, see `data_record`) image files with other contents, counted and named. Returns a note when the data
    moved but is the same, or when the run's record predates file fingerprints (what could not be checked)."""
    run_dir = Path(run_dir)
    recorded = read_data_record(run_dir)
    if recorded is None:
        return None
    if recorded.get("fingerprint") != record["fingerprint"]:
        differences = _data_differences(run_dir, recorded, record, images)
        raise RunFolderError(
            f"{run_dir}: trained on other data ({'; '.join(differences)}); use the data it was trained on "
            f"(dataset.root {recorded.get('root')}), another run folder (--out), or --overwrite to start again"
        )
    files_checked = ("files_fingerprint" in recorded and "files_fingerprint" in record
                     and recorded.get("file_digest") == record.get("file_digest"))  # digests of one kind
    if files_checked and recorded["files_fingerprint"] != record["files_fingerprint"]:
        raise RunFolderError(
            f"{run_dir}: trained on other data ({_file_differences(run_dir, images)}); use the data it was trained "
            f"on (dataset.root {recorded.get('root')}), another run folder (--out), or --overwrite to start again"
        )
    unchecked = "files_fingerprint" in record and not files_checked
    not_checked = (" (the run was recorded by a vpkit that did not fingerprint image files this way, so their "
                   "contents cannot be compared; --overwrite trains it again and records them)")
    if recorded.get("root") != record["root"]:
        same = "image files" if files_checked else "images"
        return (
            f"{run_dir} was trained on the data at {recorded.get('root')}; the data at {record['root']} has the "
            f"same {same}, splits and labels, so it is used" + (not_checked if unchecked else "")
        )
    if unchecked:
        return f"{run_dir}: the images' names, splits and labels are the ones it trained on{not_checked}"
    return None


def _file_differences(run_dir: Path, images: pd.DataFrame) -> str:
    """'2 of its 48 image files have other contents than when it trained (e.g. 'a.png', 'b.png')'."""
    path = run_dir / DATA_IMAGES_FILE
    old = pd.read_csv(path, dtype={"name": str, "file_digest": str}) if path.is_file() else None
    if old is None or "file_digest" not in old:
        return f"the contents of its image files differ ({path.name} does not say which)"
    before = old.set_index("name")["file_digest"]
    after = images.set_index("name")["file_digest"].reindex(before.index)
    changed = before.index[(before != after).to_numpy()]
    if not len(changed):
        return f"the contents of its image files differ ({path.name} does not say which)"
    named = ", ".join(repr(name) for name in changed[:NAMED_FILES])
    more = f" and {len(changed) - NAMED_FILES} more" if len(changed) > NAMED_FILES else ""
    return (f"{len(changed)} of its {len(before)} image files hold other bytes than when it trained "
            f"({named}{more})")


def _data_differences(run_dir: Path, recorded: dict, record: dict, images: pd.DataFrame) -> list[str]:
    differences = [
        f"{key} {recorded.get(key)} -> {record[key]}"
        for key in ("root", "layout")
        if recorded.get(key) != record[key]
    ]
    images_path = run_dir / DATA_IMAGES_FILE
    if images_path.is_file():
        old = pd.read_csv(images_path, dtype={"name": str, "split": str})
        splits = [text for text in (_split_difference(split, old, images) for split in SPLITS) if text]
    else:
        old_counts = recorded.get("images", {})
        splits = [
            f"{split}: {old_counts.get(split)} -> {record['images'][split]} images, or other files or labels"
            for split in SPLITS
            if recorded.get("split_fingerprints", {}).get(split) != record["split_fingerprints"][split]
        ]
    fingerprints = f"image list fingerprint {recorded.get('fingerprint')} -> {record['fingerprint']}"
    return differences + (splits or [fingerprints])


def _split_difference(split: str, old: pd.DataFrame, new: pd.DataFrame) -> str:
    """'test: 2 images gained (e.g. 'a.png'), 1 lost (...), 3 labels changed (...)', or '' if the same."""
    before = old[old["split"] == split].set_index("name")["label"]
    after = new[new["split"] == split].set_index("name")["label"]
    gained, lost = after.index.difference(before.index), before.index.difference(after.index)
    common = after.index.intersection(before.index)
    changed = common[before[common].to_numpy(float) != after[common].to_numpy(float)]  # exact, as the fingerprint
    parts = []
    if len(gained):
        parts.append(f"{len(gained)} image(s) gained (e.g. {gained[0]!r})")
    if len(lost):
        parts.append(f"{len(lost)} lost (e.g. {lost[0]!r})")
    if len(changed):
        name = changed[0]
        parts.append(f"{len(changed)} label(s) changed (e.g. {name!r} {before[name]:g} -> {after[name]:g})")
    return f"{split}: {', '.join(parts)}" if parts else ""


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
    test = _json_or_error(path.read_text(), path)
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


def copy_checkpoint(source: str | Path, target: str | Path) -> None:
    """Copy a checkpoint file atomically (best.safetensors from the best epoch's file)."""
    atomic_replace(target, lambda tmp: shutil.copyfile(source, tmp))
