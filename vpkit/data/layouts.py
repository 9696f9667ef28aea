"""Where each dataset's files are in the layouts users have (the paper's, the original release, pyiqa's),
and reading its score file into one standard frame (name, mos, group, split, line)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .problems import DatasetError, Problem, csv_line
from .specs import DatasetSpec

LAYOUTS = ("paper", "original", "pyiqa")

SPLIT_VOCABULARY = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}


@dataclass(frozen=True)
class ScoreColumn:
    """A column holding the raw score, the number the paper divides it by, and its valid range."""

    name: str
    scale: float
    low: float
    high: float


@dataclass(frozen=True)
class LayoutRule:
    """How one layout of one dataset stores its score file."""

    layout: str
    csv_names: tuple[str, ...]
    name_columns: tuple[str, ...]  # the first one present names the image file
    score_columns: tuple[ScoreColumn, ...]  # the first one present is the score
    group_columns: tuple[str, ...] = ()  # content group (reference image, prompt); else the name
    split_columns: tuple[str, ...] = ()  # the first one present holds train/val/test
    split_required: bool = False
    in_meta_info: bool = False  # pyiqa keeps its CSVs in ROOT/meta_info/


DMOS = ScoreColumn("dmos", 5.0, 1.0, 5.0)
KONIQ_MOS100 = ScoreColumn("MOS", 100.0, 0.0, 100.0)
AGIQA_QUALITY = ScoreColumn("mos_quality", 5.0, 0.0, 5.0)

RULES: dict[str, tuple[LayoutRule, ...]] = {
    "kadid": (
        LayoutRule("paper", ("split_kadid10k.csv",), ("dist_img",), (DMOS,), ("ref_img",), ("split",), True),
        LayoutRule("original", ("dmos.csv",), ("dist_img",), (DMOS,), ("ref_img",)),
        LayoutRule("pyiqa", ("meta_info_KADID10kDataset.csv",), ("dist_name",),
                   (DMOS, ScoreColumn("mos", 5.0, 1.0, 5.0)), ("ref_name",), in_meta_info=True),
    ),
    "koniq": (
        LayoutRule("paper", ("koniq10k_distributions_sets.csv",), ("image_name",), (KONIQ_MOS100,), (),
                   ("set",), True),
        # The release's MOS is on 1-5; MOS_zscore is the 0-100 score the paper's file calls MOS.
        LayoutRule("original", ("koniq10k_scores_and_distributions.csv",), ("image_name",),
                   (ScoreColumn("MOS_zscore", 100.0, 0.0, 100.0), ScoreColumn("MOS", 5.0, 1.0, 5.0))),
        LayoutRule("pyiqa", ("meta_info_KonIQ10kDataset.csv",), ("img_name",),
                   (ScoreColumn("mos", 100.0, 0.0, 100.0),), (), ("official_split", "split"), in_meta_info=True),
    ),
    "agiqa": (
        LayoutRule("paper", ("split_agiqa3k.csv",), ("name",), (AGIQA_QUALITY,), ("prompt",), ("split",), True),
        LayoutRule("original", ("data.csv",), ("name",), (AGIQA_QUALITY,), ("prompt",)),
        LayoutRule("pyiqa", ("meta_info_AGIQA3KDataset.csv", "meta_info_AGIQA3kDataset.csv",
                             "meta_info_AGIQA-3K.csv"), ("img_name", "name"),
                   (AGIQA_QUALITY, ScoreColumn("mos", 5.0, 0.0, 5.0)), ("prompt",),
                   ("official_split", "split"), in_meta_info=True),
    ),
}

# Image folders inside the dataset folder, in order of preference. KonIQ: the paper's code reads
# 1024x768 (its README says 512x384), so 1024x768 wins when both are there.
IMAGE_SUBDIRS = {
    "kadid": ("images",),
    "koniq": ("1024x768", "512x384"),
    "agiqa": ("images", "Images", "image", "database", "."),
}


@dataclass(frozen=True)
class LayoutMatch:
    """A score file found on disk, its layout, and the folder the dataset's images live under."""

    layout: str
    csv_path: Path
    dataset_dir: Path
    rule: LayoutRule


@dataclass
class ParsedRows:
    """The score file read into columns name, mos, group, split (None when the file has no split), line."""

    frame: pd.DataFrame
    score: ScoreColumn
    split_column: str | None


def _dataset_dirs(spec: DatasetSpec, root: Path) -> list[Path]:
    return [root / name for name in spec.folder_names] + [root]


def find_layouts(spec: DatasetSpec, root: Path) -> list[LayoutMatch]:
    """Every layout of `spec` found under `root`, in order of preference (paper, original, pyiqa)."""
    found = []
    for rule in RULES[spec.key]:
        match = _find_rule(spec, root, rule)
        if match is not None:
            found.append(match)
    return found


def _find_rule(spec: DatasetSpec, root: Path, rule: LayoutRule) -> LayoutMatch | None:
    if rule.in_meta_info:
        for csv_name in rule.csv_names:
            csv_path = root / "meta_info" / csv_name
            if csv_path.is_file():
                dirs = [d for d in _dataset_dirs(spec, root)[:-1] if d.is_dir()]
                dataset_dir = dirs[0] if dirs else root / spec.folder_names[0]
                return LayoutMatch(rule.layout, csv_path, dataset_dir, rule)
        return None
    for dataset_dir in _dataset_dirs(spec, root):
        for csv_name in rule.csv_names:
            csv_path = dataset_dir / csv_name
            if csv_path.is_file():
                return LayoutMatch(rule.layout, csv_path, dataset_dir, rule)
    return None


def looked_for(spec: DatasetSpec, root: Path, layout: str = "auto") -> list[Path]:
    """The score-file paths vpkit looks for (for error messages)."""
    paths = []
    for rule in RULES[spec.key]:
        if layout not in ("auto", rule.layout):
            continue
        for csv_name in rule.csv_names:
            if rule.in_meta_info:
                paths.append(root / "meta_info" / csv_name)
            else:
                paths.extend(d / csv_name for d in _dataset_dirs(spec, root)[:2])
    return paths


def locate(spec: DatasetSpec, root: Path, layout: str = "auto") -> LayoutMatch:
    """The layout to load: the first found (auto) or the one asked for; a clear error when absent."""
    if layout not in ("auto", *LAYOUTS):
        raise ValueError(f"unknown layout {layout!r}; use auto, paper, original or pyiqa")
    if not root.is_dir():
        raise DatasetError([Problem(root, "data root folder does not exist",
                                    "pass the folder that holds the dataset folders (e.g. the one with "
                                    f"{spec.folder_names[0]}/ in it)")])
    matches = [m for m in find_layouts(spec, root) if layout in ("auto", m.layout)]
    if matches:
        return matches[0]
    paths = ", ".join(str(p) for p in looked_for(spec, root, layout))
    what = f"{spec.title} score file" + ("" if layout == "auto" else f" for the {layout} layout")
    raise DatasetError([Problem(root, f"no {what} found (looked for: {paths})",
                                f"put {spec.title} under {root} in one of the layouts described in "
                                "data/README.md, or pass the right root")])


def read_rows(match: LayoutMatch) -> tuple[ParsedRows | None, list[Problem]]:
    """Read and check the score file; every bad row becomes a Problem (nothing is dropped)."""
    path, rule = match.csv_path, match.rule
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        return None, [Problem(path, f"cannot be read as CSV ({type(exc).__name__}: {exc})",
                              "re-download the file or save it again as comma-separated UTF-8 text")]
    raw.columns = [str(c).strip() for c in raw.columns]
    name_col = _first_present(raw, rule.name_columns)
    score = next((s for s in rule.score_columns if s.name in raw.columns), None)
    split_col = _first_present(raw, rule.split_columns)
    missing = []
    if name_col is None:
        missing.append(" or ".join(rule.name_columns))
    if score is None:
        missing.append(" or ".join(s.name for s in rule.score_columns))
    if rule.split_required and split_col is None:
        missing.append(" or ".join(rule.split_columns))
    if missing:
        return None, [Problem(path, f"missing column(s) {', '.join(missing)}; found columns {list(raw.columns)}",
                              f"use the {rule.layout} layout's file unchanged (data/README.md lists its columns)")]
    group_col = _first_present(raw, rule.group_columns)
    problems: list[Problem] = []
    names = raw[name_col].str.strip()
    frame = pd.DataFrame({
        "name": names,
        "mos": _parse_scores(raw[score.name], score, path, problems),
        "group": raw[group_col].str.strip() if group_col else names,
        "split": _parse_splits(raw[split_col], split_col, path, problems) if split_col else None,
        "line": [csv_line(i) for i in range(len(raw))],
    })
    problems.extend(_name_problems(frame, name_col, path))
    if len(frame) == 0:
        problems.append(Problem(path, "has a header but no rows", "re-download the file"))
    return ParsedRows(frame, score, split_col), problems


def _first_present(frame: pd.DataFrame, columns: tuple[str, ...]) -> str | None:
    return next((c for c in columns if c in frame.columns), None)


def _parse_scores(values: pd.Series, score: ScoreColumn, path: Path, problems: list[Problem]) -> np.ndarray:
    numbers = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    for pos in np.flatnonzero(~np.isfinite(numbers)):
        problems.append(Problem(path, f"score {values.iloc[pos]!r} is not a number", "put the numeric score "
                                "from the original release in this row", csv_line(int(pos)), score.name))
    bad = np.isfinite(numbers) & ((numbers < score.low) | (numbers > score.high))
    for pos in np.flatnonzero(bad):
        problems.append(Problem(path, f"score {numbers[pos]:g} is outside [{score.low:g}, {score.high:g}]",
                                f"check the row; {score.name} in this file is on the {score.low:g}-{score.high:g} "
                                "scale", csv_line(int(pos)), score.name))
    return numbers


def _parse_splits(values: pd.Series, column: str, path: Path, problems: list[Problem]) -> pd.Series:
    cleaned = values.str.strip().str.lower()
    mapped = cleaned.map(SPLIT_VOCABULARY)
    for pos in np.flatnonzero(mapped.isna().to_numpy()):
        problems.append(Problem(path, f"split value {values.iloc[pos]!r} is not one of train/val/test "
                                "(or training/validation/test)", "set it to train, val or test",
                                csv_line(int(pos)), column))
    return mapped


def _name_problems(frame: pd.DataFrame, name_col: str, path: Path) -> list[Problem]:
    problems = []
    empty = frame["name"] == ""
    for pos in np.flatnonzero(empty.to_numpy()):
        problems.append(Problem(path, "image name is empty", "fill in the image file name",
                                csv_line(int(pos)), name_col))
    duplicated = frame["name"].duplicated(keep="first") & ~empty
    first_line = frame.drop_duplicates("name").set_index("name")["line"]
    for pos in np.flatnonzero(duplicated.to_numpy()):
        name = frame["name"].iloc[pos]
        problems.append(Problem(path, f"image name {name!r} appears again (first on line {first_line[name]})",
                                "keep one row per image", csv_line(int(pos)), name_col))
    return problems


def resolve_image_dir(spec: DatasetSpec, match: LayoutMatch, names: pd.Series,
                      override: Path | None = None) -> tuple[Path, list[Problem]]:
    """The image folder: `override`, else the first candidate holding the listed images."""
    if override is not None:
        if not override.is_dir():
            return override, [Problem(override, "image folder given by image_dir does not exist",
                                      "pass the folder that holds the image files")]
        return override, []
    candidates = [(match.dataset_dir / sub).resolve() if sub == "." else match.dataset_dir / sub
                  for sub in IMAGE_SUBDIRS[spec.key]]
    probe = [n for n in names.head(20) if n]
    existing = [c for c in candidates if c.is_dir()]
    for folder in existing:
        if any((folder / n).is_file() for n in probe):
            return folder, []
    if existing:
        return existing[0], []  # the missing files are reported one by one later
    looked = ", ".join(str(c) for c in candidates)
    return candidates[0], [Problem(match.dataset_dir, f"no image folder found (looked for: {looked})",
                                   f"extract the {spec.title} images into {candidates[0]}")]


def missing_image_problems(frame: pd.DataFrame, image_dir: Path, csv_path: Path) -> list[Problem]:
    """A Problem for each row whose image file is not in `image_dir`."""
    try:
        present = {e.name for e in _scandir_files(image_dir)}
    except OSError:
        present = set()
    problems = []
    for name, line in zip(frame["name"], frame["line"]):
        if not name:
            continue
        exists = name in present if "/" not in name and "\\" not in name else (image_dir / name).is_file()
        if not exists:
            problems.append(Problem(csv_path, f"image {name!r} is listed but {image_dir / name} does not exist",
                                    "restore the image file, or remove the row if the image is gone on purpose",
                                    int(line), None))
    return problems


def _scandir_files(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as entries:
        return [e for e in entries if e.is_file()]
