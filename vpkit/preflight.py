"""Checks before the first training step, so that a bad split or a damaged image stops a run in seconds rather
than after hours of epochs: every split the run uses has enough images with different labels to correlate, and
every image file is there and decodes. Each file is read once, and its bytes are fingerprinted as they are checked
(`file_digest`), so a run records what its images held and a resume on changed pixels is refused (vpkit.runs)."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from vpkit.data.images import TOO_LARGE, image_problem, large_image_warnings_told
from vpkit.metrics import MIN_SAMPLES
from vpkit.progress import tqdm

RUN_SPLITS = ("train", "val", "test")
CORRELATED_SPLITS = ("val", "test")  # scored by correlation every epoch / at the end
NAMED = 3  # bad files named in the message; the rest are counted
PROGRESS_FROM = 1000  # images; fewer are checked too fast for a bar to help
# How an image file's contents are fingerprinted: the file's bytes as stored (not the decoded pixels, which would
# cost a full decode), so a re-encoded copy of the same pixels counts as other data. SHA-256 (CPUs hash it in
# hardware), its first 128 bits kept: enough against collisions, half the text per image in data-images.csv.
FILE_DIGEST = "sha256-128"


class PreflightError(ValueError):
    """The run's data cannot train a prompt as it is; the message names the split or files and the fix."""


def check_run_data(table, progress: bool = True) -> list[str]:
    """Refuse `table` (an IQATable, as the run will use it) when a split is empty or too small, when the val or
    test labels are all equal, or when an image is missing, does not decode or has pixels vpkit cannot convert.
    Returns the `file_digest` of every image file, in the table's row order."""
    problems = split_problems(table)
    if problems:
        raise PreflightError("; ".join(f"{what}; {fix}" for what, fix in problems))
    return check_images(table.frame["path"].tolist(), progress)


def split_problems(table) -> list[tuple[str, str]]:
    """(what, fix) for each split that cannot serve a run: train empty; val or test under MIN_SAMPLES images or
    with one label only (their SRCC/PLCC would be undefined in every epoch, so no epoch could be the best)."""
    problems = []
    source = f"{table.dataset}, split {table.split_source}"
    for split in RUN_SPLITS:
        labels = table.rows(split)["label"]
        needed = MIN_SAMPLES if split in CORRELATED_SPLITS else 1
        if len(labels) < needed:
            what = f"the {split} split has {len(labels)} image(s) but a run needs at least {needed} there ({source})"
            problems.append((what, "use more images, a larger train.limit (--limit), or a split with more there"))
        elif split in CORRELATED_SPLITS and labels.nunique() == 1:
            what = (f"all {len(labels)} images of the {split} split have the label {labels.iloc[0]:g}, so their "
                    f"correlations are undefined ({source})")
            problems.append((what, "use a split with different scores there"))
    return problems


def check_images(paths: list[str], progress: bool = True, *, decode: bool = True) -> list[str]:
    """The `file_digest` of every file in `paths`; PreflightError naming the first few files that are missing, do
    not decode or hold pixels of no fixed range (what the loader would refuse mid-epoch), and how many.
    `decode=False` only reads and fingerprints the files (a finished run's data, compared with what it recorded)."""
    with large_image_warnings_told(), ThreadPoolExecutor() as pool:  # PIL, hashlib release the GIL
        checks = pool.map(partial(_read_and_check, decode=decode), paths)
        results = list(tqdm(checks, total=len(paths), desc="checking images", unit="img", leave=False,
                            disable=not progress or len(paths) < PROGRESS_FROM))
    errors = [error for _, error in results if error]
    bad = [f"{path} ({error})" for path, (_, error) in zip(paths, results) if error]
    if bad:
        more = f" and {len(bad) - NAMED} more" if len(bad) > NAMED else ""
        large = any(error.startswith(TOO_LARGE) for error in errors)
        fix = ("raise the pixel limit as said for intact large files, or replace them" if large else
               "replace them")
        raise PreflightError(
            f"{len(bad)} of the run's {len(paths)} images cannot be read: {', '.join(bad[:NAMED])}{more}; "
            f"{fix} with intact 8- or 16-bit copies (`vpkit data check ROOT --all-errors` lists every one)"
        )
    return [digest for digest, _ in results]


def file_digest(data: bytes) -> str:
    """The fingerprint of an image file's bytes (FILE_DIGEST), as a run folder records it."""
    return hashlib.sha256(data).hexdigest()[:32]


def _read_and_check(path: str, decode: bool) -> tuple[str | None, str | None]:
    """(digest, None) for a usable image file, (digest or None, what is wrong) otherwise; the file is read once."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as error:
        return None, f"{type(error).__name__}: {error.strerror or error}"
    digest = file_digest(data)
    if not decode:
        return digest, None
    _, problem = image_problem(io.BytesIO(data), full=False)  # the same bytes, decoded from memory
    return digest, problem
