"""Train/val/test splits: the image-level random split the paper uses, a content-disjoint split grouped
by source content, how much content the splits share, and saving a generated split beside the data."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from vpkit.atomic import write_csv_atomic

from .problems import DatasetError, Problem
from .specs import SPLIT_NAMES

SPLIT_KINDS = ("paper", "random", "content")


def split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Image counts (train, val, test) for `n` images; reproduces the paper's counts on the full sets
    (KADID 8100/1012/1013, KonIQ 7058/1000/2015, AGIQA 1789/596/597)."""
    n_train = round(n * fractions[0])
    n_val = math.floor(n * fractions[1] + 1e-9)
    if n >= 3:  # small sets: keep at least one image in each split
        n_val = max(n_val, 1)
        n_train = min(n_train, n - n_val - 1)
    return n_train, n_val, n - n_train - n_val


def random_split(names: pd.Series, fractions: tuple[float, float, float], seed: int) -> pd.Series:
    """Image-level random split (the paper's kind): deterministic for `seed` and the set of names."""
    order = np.sort(names.to_numpy(dtype=str))
    shuffled = order[np.random.default_rng(seed).permutation(len(order))]
    n_train, n_val, _ = split_sizes(len(order), fractions)
    labels = np.array(["test"] * len(order), dtype=object)
    labels[:n_train] = "train"
    labels[n_train:n_train + n_val] = "val"
    return names.map(dict(zip(shuffled, labels)))


def content_split(names: pd.Series, groups: pd.Series, fractions: tuple[float, float, float],
                  seed: int) -> pd.Series:
    """Split whole content groups (e.g. KADID reference images), so no content is in two splits.
    Groups are shuffled with `seed` and filled in order up to the image-count targets."""
    sizes = groups.value_counts().sort_index()
    shuffled = sizes.index.to_numpy()[np.random.default_rng(seed).permutation(len(sizes))]
    n_train, n_val, _ = split_sizes(int(sizes.sum()), fractions)
    assignment: dict[str, str] = {}
    filled = 0
    for group in shuffled:
        middle = filled + sizes[group] / 2
        assignment[group] = "train" if middle < n_train else "val" if middle < n_train + n_val else "test"
        filled += sizes[group]
    _ensure_each_split(assignment, list(shuffled))
    return groups.map(assignment).set_axis(names.index)


def _ensure_each_split(assignment: dict[str, str], order: list[str]) -> None:
    """With three or more groups, move groups from the end of train so val and test are not empty."""
    if len(order) < 3:
        return
    for needed in ("test", "val"):
        if needed not in assignment.values():
            donor = [g for g in order if assignment[g] == "train"][-1]
            assignment[donor] = needed


def content_overlap(frame: pd.DataFrame) -> pd.DataFrame:
    """For each pair of splits, how many content groups they share and how many images of the
    second split show content that the first split also has (a content leak when the first is train)."""
    rows = []
    groups = {s: set(frame.loc[frame["split"] == s, "group"]) for s in SPLIT_NAMES}
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = groups[first] & groups[second]
        in_second = frame["split"] == second
        leaked = int((in_second & frame["group"].isin(shared)).sum())
        rows.append({
            "splits": f"{first}/{second}",
            "groups_first": len(groups[first]),
            "groups_second": len(groups[second]),
            "shared_groups": len(shared),
            "images_second": int(in_second.sum()),
            "images_second_shared": leaked,
            "fraction_second_shared": leaked / max(int(in_second.sum()), 1),
        })
    return pd.DataFrame(rows)


def saved_split_path(dataset_dir: Path, dataset: str, kind: str, seed: int) -> Path:
    """Where vpkit keeps a split it generated (a file name users are unlikely to have)."""
    return dataset_dir / f"vpkit_split_{dataset}_{kind}_seed{seed}.csv"


def load_or_save_split(path: Path, names: pd.Series, generated: pd.Series) -> tuple[pd.Series, str]:
    """Use a split saved earlier at `path` when it covers exactly these images (so a split stays
    fixed even if numpy's generator changes); otherwise save `generated` there atomically."""
    if path.is_file():
        saved = pd.read_csv(path, dtype=str, keep_default_na=False)
        if list(saved.columns[:2]) != ["name", "split"] or set(saved["name"]) != set(names):
            raise DatasetError([Problem(path, "a saved split exists but does not list exactly this dataset's "
                                        "images", "delete the file so vpkit writes a new one, or restore the "
                                        "images it lists")])
        bad = ~saved["split"].isin(SPLIT_NAMES)
        if bad.any():
            line = int(np.flatnonzero(bad.to_numpy())[0]) + 2
            raise DatasetError([Problem(path, f"split value {saved['split'][bad].iloc[0]!r} is not train/val/test",
                                        "fix the value or delete the file to regenerate it", line, "split")])
        mapping = dict(zip(saved["name"], saved["split"]))
        return names.map(mapping), f"read from {path}"
    frame = pd.DataFrame({"name": names.to_numpy(), "split": generated.to_numpy()})
    try:
        write_csv_atomic(path, frame)
    except OSError as exc:
        return generated, f"not saved ({path.parent} is not writable: {exc.strerror})"
    return generated, f"saved to {path}"
