"""Where each dataset's files are in the layouts users have (the paper's, the original release, pyiqa's),
and reading its score file into one standard frame (name, mos, group, split, line)."""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
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
# pyiqa's processing scripts write the split as a number (scripts/process_koniq10k.py: 0 training,
# 1 validation, 2 test).
PYIQA_SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}


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
    split_codes: dict[str, str] = field(default_factory=dict)  # numbers standing for train/val/test


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
                   (ScoreColumn("mos", 100.0, 0.0, 100.0),), (), ("official_split", "split"), in_meta_info=True,
                   split_codes=PYIQA_SPLIT_CODES),
    ),
    "agiqa": (
        LayoutRule("paper", ("split_agiqa3k.csv",), ("name",), (AGIQA_QUALITY,), ("prompt",), ("split",), True),
        LayoutRule("original", ("data.csv",), ("name",), (AGIQA_QUALITY,), ("prompt",)),
        LayoutRule("pyiqa", ("meta_info_AGIQA3KDataset.csv", "meta_info_AGIQA3kDataset.csv",
                             "meta_info_AGIQA-3K.csv"), ("img_name", "name"),
                   (AGIQA_QUALITY, ScoreColumn("mos", 5.0, 0.0, 5.0)), ("prompt",),
                   ("official_split", "split"), in_meta_info=True, split_codes=PYIQA_SPLIT_CODES),
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
    """The score file read into columns name, mos, group, split (None when the file has no split), line.

    `group_source` says where the content groups come from; None when the dataset has content groups (AGIQA
    prompts, KADID references) but the file does not say them (group is then the image name)."""

    frame: pd.DataFrame
    score: ScoreColumn
    split_column: str | None
    group_source: str | None = "image name"


def _dataset_dirs(spec: DatasetSpec, root: Path) -> list[Path]:
    """Where a dataset's folder may be: ROOT/NAME, nested ROOT/NAME/NAME2 (as several public loaders unpack,
    e.g. AGIQA-3k/AGIQA-3k), and ROOT itself."""
    names = spec.folder_names
    return [root / name for name in names] + [root / outer / inner for outer in names for inner in names] + [root]


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
    """Every score-file path vpkit looks for, in order."""
    paths = []
    for rule in RULES[spec.key]:
        if layout not in ("auto", rule.layout):
            continue
        for csv_name in rule.csv_names:
            if rule.in_meta_info:
                paths.append(root / "meta_info" / csv_name)
            else:
                paths.extend(d / csv_name for d in _dataset_dirs(spec, root))
    return paths


def looked_for_text(spec: DatasetSpec, root: Path, layout: str = "auto") -> str:
    """Every path looked for, said compactly: each file name with every folder tried for it."""
    rules = [rule for rule in RULES[spec.key] if layout in ("auto", rule.layout)]
    files = [name for rule in rules if not rule.in_meta_info for name in rule.csv_names]
    meta = [str(root / "meta_info" / name) for rule in rules if rule.in_meta_info for name in rule.csv_names]
    names = "{" + ",".join(spec.folder_names) + "}"
    parts = []
    if files:
        parts.append(f"{' or '.join(files)} in {root}/{names}, in the nested {root}/{names}/{names}, and in {root}")
    if meta:
        parts.append(", ".join(meta))
    return "; ".join(parts)


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
    paths = looked_for_text(spec, root, layout)
    what = f"{spec.title} score file" + ("" if layout == "auto" else f" for the {layout} layout")
    others = find_layouts(spec, root) if layout != "auto" else []
    if others:  # the data is there, in another layout than the one asked for
        found = others[0]
        raise DatasetError([Problem(root, f"no {what} found (looked for: {paths}), but the {found.layout} layout "
                                    f"is there ({found.csv_path})",
                                    f"use layout auto (dataset.layout: auto in a config, --layout auto) or "
                                    f"{found.layout}")])
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
    _warn_if_fallback_score(path, rule, score)
    problems: list[Problem] = []
    names = raw[name_col].str.strip()
    frame = pd.DataFrame({
        "name": names,
        "mos": _parse_scores(raw[score.name], score, path, problems),
        "group": raw[group_col].str.strip() if group_col else names,
        "split": _parse_splits(raw[split_col], split_col, path, problems, rule.split_codes) if split_col else None,
        "line": [csv_line(i) for i in range(len(raw))],
    })
    problems.extend(_name_problems(frame, name_col, path))
    if len(frame) == 0:
        problems.append(Problem(path, "has a header but no rows", "re-download the file"))
    if group_col:
        group_source = f"column '{group_col}' of {path.name}"
    else:
        group_source = None if rule.group_columns else "image name"
    return ParsedRows(frame, score, split_col, group_source), problems


def _warn_if_fallback_score(path: Path, rule: LayoutRule, score: ScoreColumn) -> None:
    """Say so when the score column is a fallback on another scale than the paper's (labels then differ)."""
    preferred = rule.score_columns[0]
    if score is not preferred and score.scale != preferred.scale:
        warnings.warn(f"{path}: no column '{preferred.name}' (the paper's label, {preferred.name} / "
                      f"{preferred.scale:g}), so the label is column '{score.name}' / {score.scale:g}; these labels "
                      f"are not the paper's: use the file unchanged from the release", stacklevel=4)


def derive_groups(spec: DatasetSpec, root: Path, match: LayoutMatch, parsed: ParsedRows) -> list[Problem]:
    """Fill in the content groups a score file lacks (pyiqa's AGIQA-3K meta file has no prompt) from the
    original release's file when it is there (AGIQA-3K data.csv); `parsed.group_source` says where they came
    from (still None when no file has them)."""
    if parsed.group_source is not None:
        return []
    original = next((r for r in RULES[spec.key] if r.layout == "original" and r.group_columns), None)
    found = _find_rule(spec, root, original) if original is not None and original is not match.rule else None
    if found is None:
        return []
    try:
        source = pd.read_csv(found.csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        return [Problem(found.csv_path, f"cannot be read as CSV ({type(exc).__name__}: {exc})",
                        "re-download the file (its prompts are needed to group images by content)")]
    source.columns = [str(c).strip() for c in source.columns]
    name_col, group_col = _first_present(source, original.name_columns), _first_present(source, original.group_columns)
    if name_col is None or group_col is None:
        return []
    groups = dict(zip(source[name_col].str.strip(), source[group_col].str.strip()))
    missing = [name for name in parsed.frame["name"] if name not in groups]
    if missing:
        return [Problem(found.csv_path, f"does not list {len(missing)} image(s) of {match.csv_path.name} "
                        f"(e.g. {missing[0]!r}), so their {group_col} is unknown",
                        "use the complete original file, or a split that does not group by content")]
    parsed.frame["group"] = parsed.frame["name"].map(groups)
    parsed.group_source = f"column '{group_col}' of {found.csv_path}"
    return []


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


def _parse_splits(values: pd.Series, column: str, path: Path, problems: list[Problem],
                  codes: dict[str, str] | None = None) -> pd.Series:
    cleaned = values.str.strip().str.lower()
    mapped = cleaned.map({**SPLIT_VOCABULARY, **(codes or {})})
    allowed = "train/val/test (or training/validation/test" + (", or pyiqa's 0/1/2)" if codes else ")")
    for pos in np.flatnonzero(mapped.isna().to_numpy()):
        problems.append(Problem(path, f"split value {values.iloc[pos]!r} is not one of {allowed}",
                                "set it to train, val or test", csv_line(int(pos)), column))
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
    # beside the score file, then one folder down (nested releases: AGIQA-3k/data.csv + AGIQA-3k/AGIQA-3k/Images)
    bases = [match.dataset_dir] + [match.dataset_dir / name for name in spec.folder_names]
    candidates = [(base / sub).resolve() if sub == "." else base / sub
                  for base in bases for sub in IMAGE_SUBDIRS[spec.key] if base == match.dataset_dir or sub != "."]
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
