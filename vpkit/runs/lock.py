"""Owning a run folder: one process at a time writes it (an OS file lock, and a record of who holds it)."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from vpkit.atomic import write_json_atomic
from vpkit.runs.files import LOCK_FILE, OWNER_FILE, RunFolderError


class RunFolderBusy(RunFolderError):
    """Another process owns the run folder."""


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
