"""What produced a result: the software and hardware of this process (vpkit's version and commit, Python,
torch, transformers, CUDA, cuDNN, devices), the model and the data it read, and when it ran.

`vpkit doctor` prints the environment (with this machine's state: cache folders and their free space,
which optional extras are installed); every folder vpkit writes results into (a training run, an imported
prompt, `vpkit eval --out`) holds `provenance.json`:

    {"format_version": 1, "kind": "training" | "import" | "evaluation",
     "sessions": [{"started", "ended", "outcome", "command", "device", "device_name", "processes",
                   "environment": environment_facts() (host among them), "model": model_source(...),
                   "data": data_source(...)}]}

A training run resumed later (maybe on another node or GPU) gains one session per process that worked on it, so
the record says which machine made which epochs. `format_version` is the layout of the folder; vpkit refuses a
run folder of another layout (vpkit.runs.check_run_format) rather than guessing what an older one meant.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

import vpkit
from vpkit.atomic import write_json_atomic

PACKAGE_DIR = Path(vpkit.__file__).resolve().parent
RECORD_FILE = "provenance.json"
# The layout of the folders vpkit writes. Raise it with any change that an older vpkit would read wrongly or that
# this one cannot read from an older folder; such folders are then refused in one line, never converted.
FORMAT_VERSION = 1
# In a dataset root: what `vpkit data download` unpacked there, from where, with which sha256 (written by
# vpkit.data.download, read here for the data's source).
DOWNLOAD_RECORD = "vpkit-downloads.json"


def git_state(folder: Path = PACKAGE_DIR) -> dict | None:
    """{'commit', 'dirty'} of the checkout vpkit is imported from; None for an installed package (no git work
    tree around it) or where git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if not (top / "vpkit" / "__init__.py").is_file():  # vpkit installed inside some other repository
            return None
        commit = git("rev-parse", "HEAD")
        # untracked files count: a new module changes what runs as much as an edited one
        dirty = bool(git("status", "--porcelain", "--", str(top / "vpkit")))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def devices() -> list[dict]:
    """The CUDA devices this process sees (name, total memory in GiB, compute capability); [] without CUDA."""
    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append({
            "index": index,
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
        })
    return found


# The extras of pyproject.toml a user may be missing (dev only runs the tests).
CHECKED_EXTRAS = ("notebooks", "synth", "cluster")


def extras_installed(extras: tuple[str, ...] = CHECKED_EXTRAS) -> dict:
    """{extra: {package: installed version or None}} for vpkit's optional extras, from vpkit's own package
    metadata; {extra: None} where vpkit is not installed (run from a source folder without `pip install -e`)."""
    try:
        requirements = importlib.metadata.requires("vpkit") or []
    except importlib.metadata.PackageNotFoundError:
        return dict.fromkeys(extras)
    found: dict = {extra: {} for extra in extras}
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) in found:
            package = re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0)
            found[extra.group(1)][package] = package_version(package)
    return found


def cache_folders() -> dict:
    """{what: {path, exists, free_gib}} for the folders vpkit's runs fill: torch.compile's cache and the Hugging
    Face cache (model downloads). Free space is that of the file system the folder is (or would be) on."""
    from vpkit.compile_cache import default_compile_cache_dir
    from vpkit.hub import cache_folder

    folders = {"torch.compile cache": default_compile_cache_dir(), "Hugging Face cache": cache_folder()}
    return {name: _folder_state(path) for name, path in folders.items()}


def _folder_state(path: Path) -> dict:
    from vpkit.hub import free_space

    try:
        existing, free = free_space(path)
    except OSError:
        existing, free = path, None
    return {"path": str(path), "exists": path.is_dir(), "writable": os.access(existing, os.W_OK),
            "free_gib": None if free is None else round(free / 2**30, 1)}


def environment_facts(machine: bool = False) -> dict:
    """The software and hardware of this process, as plain JSON-ready values; with `machine`, also this machine's
    cache folders (free space) and installed extras, which a bug report needs and a run folder does not."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    facts = {
        "vpkit": vpkit.__version__,
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
        "huggingface_hub": package_version("huggingface_hub"),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "cuda_available": torch.cuda.is_available(),
        "devices": devices(),
    }
    if machine:
        facts.update(caches=cache_folders(), extras=extras_installed())
    return facts


# ----------------------------------------------------------------------------- the model and the data


def model_source(name_or_path: str | Path, hub: dict | None = None) -> dict:
    """Where the model came from: a Hub record (`hub`: repo_id, revision, commit, as the Hub fetch resolved it;
    `name_or_path` is then the local snapshot), a built-in preset, or a local folder, with a fingerprint that
    changes when its weights do (a folder: config.json, the weight index and each weight file's name and size,
    so 14 GB of weights are never read)."""
    from vpkit.models.tiny import TINY_ASSET_DIR, TINY_RANDOM

    name = str(name_or_path)
    if hub is not None:
        record = {"kind": "hub", **{key: hub.get(key) for key in ("repo_id", "revision", "commit")}, "path": name}
        if Path(name).is_dir():
            record["fingerprint"] = folder_fingerprint(Path(name))
        return record
    if name == TINY_RANDOM:  # weights from a seed in vpkit's code: the vpkit version and commit identify them
        return {"kind": "preset", "name": name, "fingerprint": None}
    if name == "tiny":
        return {"kind": "preset", "name": name, "fingerprint": _files_fingerprint(TINY_ASSET_DIR)}
    path = Path(name).expanduser()
    if path.is_dir():
        return {"kind": "folder", "path": str(path.resolve()), "fingerprint": folder_fingerprint(path)}
    return {"kind": "name", "name": name, "fingerprint": None}  # neither a preset nor a folder here


def scorer_source(scorer, name_or_path: str | Path) -> dict:
    """The model source a loaded scorer carries (load_scorer sets it, with the Hub commit it resolved), else that
    of the model it was loaded from (a scorer built by hand)."""
    return getattr(scorer, "model_source", None) or model_source(name_or_path)


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def folder_fingerprint(folder: Path) -> str:
    """sha256 (16 hex digits) of a model folder's config.json, its weight indexes and the names and sizes of its
    weight files."""
    from vpkit.models.loading import BIN_INDEX, SAFETENSORS_INDEX

    digest = hashlib.sha256()
    for name in ("config.json", SAFETENSORS_INDEX, BIN_INDEX):
        if (folder / name).is_file():
            digest.update(f"{name}\n".encode() + (folder / name).read_bytes())
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in WEIGHT_SUFFIXES:
            digest.update(f"{path.name}\t{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def _files_fingerprint(folder: Path) -> str | None:
    """sha256 (16 hex digits) of every file's name and bytes: for the small folders vpkit ships."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def data_source(root: str | Path | None, dataset: str | None = None) -> dict:
    """The data a folder's result was computed on: the dataset and its root, and the archives `vpkit data
    download` fetched into that root (name, source, sha256), when it did."""
    if root is None:
        return {"dataset": dataset, "root": None, "archives": None}
    root = Path(root).expanduser().resolve()
    return {"dataset": dataset, "root": str(root), "archives": downloaded_archives(root)}


def downloaded_archives(root: Path) -> list[dict] | None:
    """The archives the download record in `root` names, each with its sha256; None without a record.

    Read loosely (every JSON object in the record that has a sha256), so the record's layout stays the
    downloader's to choose."""
    path = Path(root) / DOWNLOAD_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        return [{"problem": f"{path}: unreadable ({error})"}]
    found = []

    def visit(value, key=None):
        if isinstance(value, dict):
            if isinstance(value.get("sha256"), str):
                entry = {k: value[k] for k in ("name", "archive", "file", "source", "repo_id", "commit", "url", "sha256")
                         if k in value}
                found.append({"name": key, **entry} if key and "name" not in entry else entry)
                return
            for child_key, child in value.items():
                visit(child, child_key)
        elif isinstance(value, list):
            for child in value:
                visit(child)

    visit(record)
    return found


# ----------------------------------------------------------------------------- the record in a folder


class ProvenanceError(ValueError):
    """A provenance.json that cannot be read; the message names it and the fix."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def session(device: str | None, model: dict, data: dict, processes: int = 1) -> dict:
    """One process's part in a folder: when (started now; ended, outcome filled in by `finish`), on what, with
    which model and data."""
    name = None
    if device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available():
        name = torch.cuda.get_device_name(torch.device(device))
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    return {
        "started": now(),
        "ended": None,
        "outcome": None,
        "command": command,
        "device": None if device is None else str(device),
        "device_name": name,
        "processes": processes,
        "environment": environment_facts(),
        "model": model,
        "data": data,
    }


def finish(entry: dict, outcome: str = "finished") -> dict:
    entry.update(ended=now(), outcome=outcome)
    return entry


def write_record(folder: str | Path, kind: str, sessions: list[dict]) -> None:
    write_json_atomic(Path(folder) / RECORD_FILE,
                      {"format_version": FORMAT_VERSION, "kind": kind, "sessions": sessions})


def read_record(folder: str | Path) -> dict | None:
    """provenance.json of `folder`; None when it has none. Raises ProvenanceError naming a damaged one."""
    path = Path(folder) / RECORD_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ProvenanceError(f"{path}: unreadable ({error}); restore it or run again with --overwrite") from None
    if not isinstance(record, dict) or not isinstance(record.get("sessions", []), list):
        raise ProvenanceError(f"{path}: not a vpkit provenance record; restore it or run again with --overwrite")
    return record


@contextlib.contextmanager
def recording(folder: str | Path, kind: str, entry: dict, append: bool = False) -> Iterator[dict]:
    """Record `entry` (a `session`) in `folder` while the block runs: written at the start, so a killed process
    leaves its start behind (ended null), and again at the end with the outcome. `append` keeps the sessions
    already recorded there (a resumed training)."""
    earlier = (read_record(folder) or {}).get("sessions", []) if append else []
    write_record(folder, kind, [*earlier, entry])
    outcome = "finished"
    try:
        yield entry
    except KeyboardInterrupt:
        outcome = "stopped"
        raise
    except BaseException as error:
        outcome = f"failed ({type(error).__name__})"
        raise
    finally:
        write_record(folder, kind, [*earlier, finish(entry, outcome)])


# ----------------------------------------------------------------------------- reading records back


def summary(record: dict | None) -> dict:
    """A flat row of a record (its last session, which made the folder's current state): what `vpkit runs
    --provenance` shows."""
    if not record or not record.get("sessions"):
        return {"format_version": (record or {}).get("format_version")}
    sessions = record["sessions"]
    last = sessions[-1]
    environment = last.get("environment") or {}
    return {
        "format_version": record.get("format_version"),
        "sessions": len(sessions),
        "started": sessions[0].get("started"),
        "ended": last.get("ended"),
        "outcome": last.get("outcome"),
        "host": environment.get("host"),
        "device": last.get("device"),
        "device_name": last.get("device_name"),
        "vpkit": vpkit_label(environment),
        "torch": environment.get("torch"),
        "transformers": environment.get("transformers"),
        "cuda": environment.get("cuda"),
        "cudnn": environment.get("cudnn"),
        "model_source": model_label(last.get("model") or {}),
        "data_archives": archives_label((last.get("data") or {}).get("archives")),
    }


def vpkit_label(environment: dict) -> str | None:
    """'0.1.0', or '0.1.0 @ 1a2b3c4d5e6f (uncommitted changes)' from a checkout."""
    version = environment.get("vpkit")
    git = environment.get("git")
    if not git:
        return version
    return f"{version} @ {git['commit'][:12]}" + (" (uncommitted changes)" if git.get("dirty") else "")


def model_label(model: dict) -> str | None:
    """The model's revision in one string: Hub id @ commit, preset or folder with its fingerprint."""
    kind = model.get("kind")
    if kind == "hub":
        return f"{model.get('repo_id')} @ {model.get('commit') or model.get('revision')}"
    what = model.get("path") if kind == "folder" else model.get("name")
    if what is None:
        return None
    return f"{what} ({model['fingerprint']})" if model.get("fingerprint") else what


def archives_label(archives: list[dict] | None) -> str | None:
    if not archives:
        return None
    return ", ".join(f"{a.get('name') or a.get('archive') or a.get('file')}: {str(a.get('sha256'))[:12]}"
                     for a in archives)


# What `provenance_table` keeps of a collect_runs table: which run, and whether it is usable.
RUN_COLUMNS = ("run", "name", "status", "problem")


def provenance_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run of `runs` (a vpkit.runs.collect_runs table): its run, name and status, and the summary of
    its provenance record (what `vpkit runs --provenance` shows)."""
    rows = []
    for path in runs["run"]:
        try:
            rows.append(summary(read_record(path)))
        except ProvenanceError as error:
            rows.append({"provenance_problem": str(error)})
    kept = runs[[column for column in RUN_COLUMNS if column in runs]].reset_index(drop=True)
    return pd.concat([kept, pd.DataFrame(rows)], axis=1)
