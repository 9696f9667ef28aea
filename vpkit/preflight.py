"""Checks before the first training step, so that a bad split or a damaged image stops a run in seconds rather
than after hours of epochs: every split the run uses has enough images with different labels to correlate, and
every image file is there and decodes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import partial

from vpkit.data.images import image_problem
from vpkit.metrics import MIN_SAMPLES
from vpkit.progress import tqdm

RUN_SPLITS = ("train", "val", "test")
CORRELATED_SPLITS = ("val", "test")  # scored by correlation every epoch / at the end
NAMED = 3  # bad files named in the message; the rest are counted
PROGRESS_FROM = 1000  # images; fewer are checked too fast for a bar to help


class PreflightError(ValueError):
    """The run's data cannot train a prompt as it is; the message names the split or files and the fix."""


def check_run_data(table, progress: bool = True) -> None:
    """Refuse `table` (an IQATable, as the run will use it) when a split is empty or too small, when the val or
    test labels are all equal, or when an image is missing, does not decode or has pixels vpkit cannot convert."""
    problems = split_problems(table)
    if problems:
        raise PreflightError("; ".join(f"{what}; {fix}" for what, fix in problems))
    check_images(table.frame["path"].tolist(), progress)


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


def check_images(paths: list[str], progress: bool = True) -> None:
    """Raise PreflightError naming the first few files that are missing, do not decode or hold pixels of no fixed
    range (what the loader would refuse mid-epoch), and how many."""
    with ThreadPoolExecutor() as pool:  # PIL releases the GIL while it reads and decodes
        fast_checks = pool.map(partial(image_problem, full=False), paths)
        results = list(tqdm(fast_checks, total=len(paths), desc="checking images", unit="img", leave=False,
                            disable=not progress or len(paths) < PROGRESS_FROM))
    bad = [f"{path} ({error})" for path, (_, error) in zip(paths, results) if error]
    if bad:
        more = f" and {len(bad) - NAMED} more" if len(bad) > NAMED else ""
        raise PreflightError(
            f"{len(bad)} of the run's {len(paths)} images cannot be read: {', '.join(bad[:NAMED])}{more}; "
            "replace them with intact 8- or 16-bit copies (`vpkit data check ROOT --all-errors` lists every one)"
        )
