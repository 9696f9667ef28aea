"""`vpkit data download kadid10k koniq10k agiqa3k --to ROOT`: the archives the paper's README uses (pyiqa's Hub
dataset chaofengc/IQA-PyTorch-Datasets) and the paper's pinned split files, unpacked into the paper's layout.

Per dataset: the archive comes through vpkit.hub (huggingface_hub's cache: resumed, HF_TOKEN, HF_HUB_OFFLINE),
is unpacked into a temporary folder inside ROOT, checked for the members vpkit reads (a missing one is named),
given its split file, and only then renamed into place, so a failed unpack leaves no half folder. ROOT/
vpkit-downloads.json records each archive's source and sha256; an archive that differs from the recorded one is
refused unless `force`. data/README.md says what each archive holds and what vpkit uses of it.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock, Timeout

from vpkit.archives import unpack
from vpkit.atomic import write_json_atomic
from vpkit.hub import FetchError, fetch_file, remote_size, require_free_space
from vpkit.provenance import DOWNLOAD_RECORD

from .specs import dataset_spec

UNPACK_PREFIX = ".vpkit-unpack-"
LOCK_FILE = ".vpkit-download.lock"
ARCHIVE_REPO = "chaofengc/IQA-PyTorch-Datasets"  # a Hub dataset repository
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class DatasetArchive:
    """One dataset's archive and what vpkit needs inside it."""

    key: str  # vpkit's dataset name
    filename: str  # in ARCHIVE_REPO
    folder: str  # the folder it unpacks to (its own name is kept)
    image_folders: tuple[str, ...]  # inside `folder`: the first present must hold images
    score_files: tuple[str, ...]  # inside `folder`: one must be there (empty: the split file brings the scores)
    split_file: str | None = None  # a vpkit.paper.SPLIT_FILES key, placed inside `folder`


ARCHIVES = {
    "kadid": DatasetArchive("kadid", "kadid10k.tgz", "kadid10k", ("images",), (), "kadid"),
    # KonIQ: the paper's code reads 1024x768/, its README 512x384/; the split is KonIQ's own `set` column
    "koniq": DatasetArchive("koniq", "koniq10k.tgz", "koniq10k", ("1024x768", "512x384"),
                            ("koniq10k_distributions_sets.csv",)),
    "agiqa": DatasetArchive("agiqa", "AGIQA-3K.zip", "AGIQA-3K", ("images", "Images", "image", "."), (), "agiqa"),
}


def archive_for(name: str) -> DatasetArchive:
    try:
        return ARCHIVES[dataset_spec(name).key]
    except ValueError:
        raise ValueError(f"unknown dataset {name!r}; vpkit downloads kadid10k, koniq10k and agiqa3k") from None


def read_record(root: Path) -> dict:
    path = root / DOWNLOAD_RECORD
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not readable as JSON ({error}); restore it or delete it (vpkit then treats the "
                         "datasets there as not downloaded by it)") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path}: not a JSON object; restore it or delete it")  # noqa: TRY004 (one told line)
    return record


def download(names: Iterable[str], root: str | Path, *, force: bool = False, revision: str | None = None,
             out: Callable[[str], None] = print) -> dict:
    """Download and unpack each dataset of `names` into `root`; returns the record written to ROOT/
    vpkit-downloads.json (dataset key -> archive source, sha256, folder, split file)."""
    root = Path(root).expanduser()
    archives = list(dict.fromkeys(archive_for(name) for name in names))
    root.mkdir(parents=True, exist_ok=True)
    try:  # one download into ROOT at a time: the leftovers of one are the work in progress of another
        with FileLock(root / LOCK_FILE, timeout=0):
            return _download_all(root, archives, force=force, revision=revision, out=out)
    except Timeout:
        raise FetchError(f"{root}: another `vpkit data download` is unpacking into it ({root / LOCK_FILE}); wait "
                         "for it to finish") from None


def _download_all(root: Path, archives: list[DatasetArchive], *, force: bool, revision: str | None,
                  out: Callable[[str], None]) -> dict:
    record = read_record(root)
    for leftover in remove_leftovers(root):
        out(f"removed {leftover}, left by an interrupted unpack")
    todo = [a for a in archives if force or not _already_there(root, record.get(a.key), a)]
    for archive in archives:
        if archive not in todo:
            out(f"{archive.folder}: already unpacked from {archive.filename} "
                f"(sha256 {record[archive.key]['sha256'][:12]}...), kept")
    _check_space(root, todo, revision)
    for archive in todo:
        entry = _download_one(root, archive, record.get(archive.key), force=force, revision=revision, out=out)
        record[archive.key] = entry
        write_json_atomic(root / DOWNLOAD_RECORD, record)
    return record


def _already_there(root: Path, entry: dict | None, archive: DatasetArchive) -> bool:
    return bool(entry) and (root / entry.get("folder", archive.folder)).is_dir()


def _check_space(root: Path, archives: list[DatasetArchive], revision: str | None) -> None:
    """Before anything is fetched: room for every archive and its unpacked copy (their sizes from the Hub)."""
    sizes = {a.filename: remote_size(ARCHIVE_REPO, a.filename, repo_type="dataset", revision=revision)
             for a in archives}
    known = sum(size for size in sizes.values() if size)
    if known:
        root.mkdir(parents=True, exist_ok=True)
        require_free_space(root, 2 * known, f"{', '.join(sizes)} ({known / 1e9:.2f} GB) downloaded and unpacked")


def _download_one(root: Path, archive: DatasetArchive, recorded: dict | None, *, force: bool,
                  revision: str | None, out: Callable[[str], None]) -> dict:
    from vpkit.paper import SPLIT_FILES, fetch_split_file

    out(f"{archive.folder}: fetching {archive.filename} from the Hub dataset {ARCHIVE_REPO}")
    fetched = fetch_file(ARCHIVE_REPO, archive.filename, repo_type="dataset", revision=revision,
                         free_space_for=root)
    if recorded and recorded.get("sha256") != fetched.sha256 and not force:
        raise FetchError(f"{root / DOWNLOAD_RECORD} records {archive.filename} with sha256 {recorded.get('sha256')}, "
                         f"but the one fetched has {fetched.sha256}; pass --force to replace "
                         f"{root / archive.folder} with it")
    target = root / archive.folder
    if target.exists() and not force and not recorded:
        raise FetchError(f"{target}: already exists and was not unpacked by vpkit; move it away, or pass --force to "
                         "replace it")
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=UNPACK_PREFIX, dir=root) as scratch:
        scratch = Path(scratch)
        unpack(fetched.path, scratch / "unpacked", archive.filename)
        folder = _dataset_folder(scratch / "unpacked", archive)
        check_members(folder, archive)
        split = None
        if archive.split_file:
            split = fetch_split_file(archive.split_file, folder)
            out(f"{archive.folder}: {SPLIT_FILES[archive.split_file].name} from {split.url} (sha256 verified)")
        if target.exists():  # --force: the old folder goes only once the new one is complete
            target.rename(scratch / "replaced")
        folder.rename(target)
    out(f"{archive.folder}: unpacked into {target}")
    entry = {
        "archive": archive.filename, "folder": archive.folder, **fetched.source(),
        "size": fetched.path.stat().st_size,
        "unpacked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if split is not None:
        entry["split_file"] = {"name": split.path.name, "url": split.url, "sha256": split.sha256}
    return entry


def _dataset_folder(unpacked: Path, archive: DatasetArchive) -> Path:
    """The dataset's folder in what the archive unpacked to: the folder of the dataset's name, else the one
    folder the archive holds, else the loose files (gathered into a folder of the archive's name)."""
    spec = dataset_spec(archive.key)
    for name in (archive.folder, *spec.folder_names):
        if (unpacked / name).is_dir():
            return unpacked / name
    entries = [entry for entry in unpacked.iterdir() if not entry.name.startswith(("__MACOSX", "."))]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    gathered = unpacked.parent / archive.folder
    gathered.mkdir()
    for entry in entries:
        entry.rename(gathered / entry.name)
    return gathered


def check_members(folder: Path, archive: DatasetArchive) -> None:
    """The members vpkit reads must be there: an image folder with images and the score file."""
    where = f"{archive.filename} (unpacked into {folder.name}/)"
    images = next((folder / sub for sub in archive.image_folders if _has_images(folder / sub)), None)
    if images is None:
        looked = ", ".join(f"{folder.name}/{sub}/" if sub != "." else f"{folder.name}/" for sub in archive.image_folders)
        raise FetchError(f"{where}: no images in {looked}; the archive is not the expected one (see data/README.md)")
    missing = [name for name in archive.score_files if not (folder / name).is_file()]
    if archive.score_files and len(missing) == len(archive.score_files):
        raise FetchError(f"{where}: missing {folder.name}/{missing[0]}, the score file with the paper's split; the "
                         "archive is not the expected one (see data/README.md)")


def _has_images(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    with os.scandir(folder) as entries:
        return any(entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES) for entry in entries)


def remove_leftovers(root: Path) -> list[Path]:
    """Temporary unpack folders a killed download left in `root`."""
    leftovers = sorted(root.glob(f"{UNPACK_PREFIX}*"))
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers
