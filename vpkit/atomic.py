"""Atomic file writes: every result, checkpoint, table and cache manifest goes through here, so a kill never
leaves a half-written file (write to a temporary file beside the target, then rename over it)."""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

TEMP_SUFFIX = ".tmp"


def leftover_temp_files(folder: str | Path, name_pattern: str) -> list[Path]:
    """The temporary files a killed `atomic_replace` left in `folder` for targets matching `name_pattern`
    (a glob, e.g. "epoch-*.safetensors"): `.NAME.<random>.tmp`. Only the writer of `folder` may remove them
    (another live writer's file looks the same)."""
    return sorted(Path(folder).glob(f".{name_pattern}.*{TEMP_SUFFIX}"))


def atomic_replace(path: str | Path, write) -> None:
    """Write through `write(tmp_path)` into a temporary file beside `path`, then rename it over `path`.

    The data reach the disk before the rename (fsync), so a crash leaves the old file or the new one, never an
    empty one. The file gets the permissions a plain `open()` would give it (mkstemp's are 0600, which would hide
    results from the rest of a group), or keeps those of the file it replaces."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(handle)
    try:
        write(tmp)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _new_file_mode())
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if _is_storage_error(error):
            raise WriteError(path, error) from error
        raise


class WriteError(OSError):
    """Writing a file failed (disk full, no permission, ...); names the target file, not the temporary one."""

    def __init__(self, path: Path, cause: BaseException):
        number = getattr(cause, "errno", None) or _os_error_number(str(cause))
        reason = getattr(cause, "strerror", None) or (os.strerror(number) if number else str(cause).splitlines()[0])
        super().__init__(number, reason, str(path))


def _is_storage_error(error: BaseException) -> bool:
    # torch.save reports a short write as a RuntimeError and safetensors as its own SafetensorError
    if isinstance(error, OSError) or type(error).__name__ == "SafetensorError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("inline_container" in text or _os_error_number(text) is not None)


def _os_error_number(text: str) -> int | None:
    found = re.search(r"os error (\d+)", text)
    return int(found.group(1)) if found else None


def _new_file_mode() -> int:
    """0o666 less the process umask (reading the umask means setting it; it is put straight back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def write_text_atomic(path: str | Path, text: str) -> None:
    atomic_replace(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None (null), so the JSON files are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json_atomic(path: str | Path, data: Any) -> None:
    text = json.dumps(json_safe(data), indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    write_text_atomic(path, text + "\n")


def write_csv_atomic(path: str | Path, frame) -> None:
    """A pandas DataFrame as CSV, without its index."""
    atomic_replace(path, lambda tmp: frame.to_csv(tmp, index=False))


def _json_default(value: Any):
    if hasattr(value, "item"):  # numpy and torch scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
