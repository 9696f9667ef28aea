"""On-disk cache of prepared uint8 [S, S, 3] images: one .npy memmap per dataset + size + method, with a
JSON manifest. Rebuilt when a source image's size or mtime, the image list, or the preparation changes.
Built into a temporary file and renamed into place, so a killed build never leaves a half cache."""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from vpkit.atomic import write_text_atomic
from vpkit.progress import tqdm

from .images import METHODS, PREP_VERSION, prepare_image
from .table import IQATable
from .workers import default_num_workers

CACHE_FORMAT = 1


@dataclass(frozen=True)
class PreparedCache:
    """A built cache: `array_path` holds uint8 [N, S, S, 3]; `row_of` maps image name -> row."""

    array_path: Path
    manifest_path: Path
    row_of: dict[str, int]
    size: int
    method: str

    def open(self) -> np.ndarray:
        """The cached images as a read-only memmap."""
        return np.load(self.array_path, mmap_mode="r")


def cache_stem(table: IQATable, size: int, method: str) -> str:
    """File stem naming dataset, image folder (hashed, so two copies of a dataset don't collide), size, method."""
    folder = hashlib.sha256(str(Path(table.image_dir).resolve()).encode()).hexdigest()[:10]
    return f"{table.dataset}-{folder}-{size}px-{method}"


def source_fingerprint(paths: list[str], names: list[str], size: int, method: str) -> str:
    """Hash of what the cache depends on: preparation, and each source file's name, size and mtime."""
    digest = hashlib.sha256(f"{CACHE_FORMAT}|{PREP_VERSION}|{method}|{size}".encode())
    for name, path in zip(names, paths):
        stat = os.stat(path)
        digest.update(f"|{name}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def ensure_cache(table: IQATable, size: int, method: str, cache_dir: str | Path,
                 num_workers: int | None = None, progress: bool = True) -> PreparedCache:
    """The cache for all of `table`'s images, built (or rebuilt) when missing or out of date."""
    if method not in METHODS:
        raise ValueError(f"unknown preparation method {method!r}; use one of {', '.join(METHODS)}")
    cache_dir = Path(cache_dir).expanduser()
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = cache_stem(table, size, method)
    array_path, manifest_path = cache_dir / f"{stem}.npy", cache_dir / f"{stem}.json"
    names = table.frame["name"].tolist()
    paths = table.frame["path"].tolist()
    fingerprint = source_fingerprint(paths, names, size, method)
    cache = PreparedCache(array_path, manifest_path, {n: i for i, n in enumerate(names)}, size, method)
    manifest = _read_manifest(manifest_path)
    if manifest.get("fingerprint") == fingerprint and _array_ok(array_path, len(names), size):
        return PreparedCache(array_path, manifest_path, {n: i for i, n in enumerate(manifest["names"])},
                             size, method)
    _build(cache, paths, names, num_workers, progress)
    write_text_atomic(manifest_path, json.dumps({
        "format": CACHE_FORMAT, "fingerprint": fingerprint, "dataset": table.dataset,
        "image_dir": str(table.image_dir), "size": size, "method": method, "names": names,
    }))
    return cache


def _read_manifest(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _array_ok(path: Path, rows: int, size: int) -> bool:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.dtype == np.uint8 and array.shape == (rows, size, size, 3)


class _PrepareRows(Dataset):
    def __init__(self, paths: list[str], size: int, method: str):
        self.paths, self.size, self.method = paths, size, method

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray]:
        return index, prepare_image(self.paths[index], self.size, self.method)


def _stack_rows(items: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([i for i, _ in items]), np.stack([a for _, a in items])


def _build(cache: PreparedCache, paths: list[str], names: list[str], num_workers: int | None,
           progress: bool) -> None:
    _remove_stale_temporaries(cache.array_path)
    cache.manifest_path.unlink(missing_ok=True)  # from here on the old cache no longer counts as valid
    tmp = cache.array_path.with_name(f".{cache.array_path.stem}.{os.getpid()}.tmp.npy")
    workers = default_num_workers() if num_workers is None else num_workers
    rows = DataLoader(_PrepareRows(paths, cache.size, cache.method), batch_size=16, num_workers=workers,
                      collate_fn=_stack_rows)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(len(paths), cache.size, cache.size, 3))
        with tqdm(total=len(paths), desc=f"caching {cache.array_path.name}", unit="img",
                  disable=not progress) as bar:
            for index, images in rows:
                array[index] = images
                bar.update(len(index))
        array.flush()
        del array
        os.replace(tmp, cache.array_path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_temporaries(array_path: Path) -> None:
    """Remove temporaries left by killed builds (their process is gone)."""
    pattern = re.compile(rf"^\.{re.escape(array_path.stem)}\.(\d+)\.tmp\.npy$")
    for leftover in array_path.parent.iterdir():
        found = pattern.match(leftover.name)
        if found and not _process_alive(int(found.group(1))):
            leftover.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
