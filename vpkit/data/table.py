"""`load_table`: one dataset on disk -> an `IQATable` (name, path, mos, label, split, group)."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .layouts import (
    RULES,
    LayoutMatch,
    ParsedRows,
    derive_groups,
    locate,
    missing_image_problems,
    read_rows,
    resolve_image_dir,
)
from .problems import DatasetError, Problem
from .specs import SPLIT_NAMES, DatasetSpec, dataset_spec
from .splits import SPLIT_KINDS, content_split, load_or_save_split, random_split, saved_split_path

COUNT_CHECKS = ("warn", "error", "off")
SYNTHETIC_MARKER = "synthetic.json"


@dataclass
class IQATable:
    """A dataset's images with scores and split. `frame` columns: name, path, mos (the file's score),
    label (mos / scale, in [0, 1]), split (train/val/test), group (content: reference image or prompt)."""

    frame: pd.DataFrame
    dataset: str
    layout: str
    image_dir: Path
    scale: float
    split_source: str
    csv_path: Path
    synthetic: bool = False
    # Where `group` comes from; None when the dataset has content groups the score file does not give.
    group_source: str | None = "image name"

    def __len__(self) -> int:
        return len(self.frame)

    def rows(self, split: str) -> pd.DataFrame:
        """The rows of one split (`train`, `val`, `test`) or all rows (`all`)."""
        if split == "all":
            return self.frame
        if split not in SPLIT_NAMES:
            raise ValueError(f"split must be one of train, val, test, all; got {split!r}")
        return self.frame[self.frame["split"] == split]

    def split_counts(self) -> dict[str, int]:
        """Images per split, in train/val/test order."""
        counts = self.frame["split"].value_counts()
        return {s: int(counts.get(s, 0)) for s in SPLIT_NAMES}

    def describe(self) -> str:
        """One line saying what was loaded from where."""
        counts = ", ".join(f"{k} {v}" for k, v in self.split_counts().items())
        kind = " (synthetic)" if self.synthetic else ""
        return (f"{self.dataset}{kind}: {len(self)} images [{counts}], layout {self.layout}, "
                f"scores {self.csv_path}, images {self.image_dir}, label = mos / {self.scale:g}, "
                f"split {self.split_source}")


def load_table(dataset: str, root: str | Path, layout: str = "auto", split: str = "paper", seed: int = 42,
               *, image_dir: str | Path | None = None, count_check: str = "warn",
               all_errors: bool = False) -> IQATable:
    """Load `dataset` (kadid | koniq | agiqa) from the data root `root`.

    layout: auto | paper | original | pyiqa. split: paper (the split file when the layout has one,
    else a generated paper-style random split), random (image-level, seeded), content (whole content
    groups, seeded). Generated splits are saved beside the data. image_dir overrides the image folder.
    count_check: warn | error | off when the image count differs from the full dataset (synthetic sets
    are never checked). all_errors: put every problem found in the raised DatasetError, not just the first.
    """
    table, problems = build_table(dataset, root, layout, split, seed, image_dir=image_dir, count_check=count_check)
    if problems:
        raise DatasetError(problems, show_all=all_errors)
    assert table is not None
    return table


def build_table(dataset: str, root: str | Path, layout: str = "auto", split: str = "paper", seed: int = 42,
                *, image_dir: str | Path | None = None,
                count_check: str = "warn") -> tuple[IQATable | None, list[Problem]]:
    """Like `load_table` but returns every problem found instead of raising (for `vpkit data check`)."""
    spec = dataset_spec(dataset)
    if split not in SPLIT_KINDS:
        raise ValueError(f"split must be one of {', '.join(SPLIT_KINDS)}; got {split!r}")
    if count_check not in COUNT_CHECKS:
        raise ValueError(f"count_check must be one of {', '.join(COUNT_CHECKS)}; got {count_check!r}")
    try:
        match = locate(spec, Path(root).expanduser(), layout)
    except DatasetError as exc:
        return None, exc.problems
    parsed, problems = read_rows(match)
    if parsed is None:
        return None, problems
    problems += derive_groups(spec, Path(root).expanduser(), match, parsed)
    folder, folder_problems = resolve_image_dir(
        spec, match, parsed.frame["name"], Path(image_dir).expanduser() if image_dir is not None else None)
    problems += folder_problems
    if not folder_problems:
        problems += missing_image_problems(parsed.frame, folder, match.csv_path)
    if problems:
        return None, problems
    synthetic = (match.dataset_dir / SYNTHETIC_MARKER).is_file()
    try:
        splits, source = _choose_split(spec, match, parsed, split, seed)
    except DatasetError as exc:
        return None, exc.problems
    frame = pd.DataFrame({
        "name": parsed.frame["name"].to_numpy(dtype=object),
        "path": [str(folder / n) for n in parsed.frame["name"]],
        "mos": parsed.frame["mos"].to_numpy(dtype=np.float64),
        "label": (parsed.frame["mos"] / parsed.score.scale).to_numpy(dtype=np.float64),
        "split": splits.to_numpy(dtype=object),
        "group": parsed.frame["group"].to_numpy(dtype=object),
    })
    table = IQATable(frame, spec.key, match.layout, folder, parsed.score.scale, source, match.csv_path, synthetic,
                     parsed.group_source)
    count_problems = [] if synthetic or count_check == "off" else _count_problems(spec, table, split)
    if count_problems and count_check == "error":
        return None, count_problems
    for problem in count_problems:
        warnings.warn(str(problem), stacklevel=3)
    return table, []


def _choose_split(spec: DatasetSpec, match: LayoutMatch, parsed: ParsedRows, split: str,
                  seed: int) -> tuple[pd.Series, str]:
    names, groups = parsed.frame["name"], parsed.frame["group"]
    if split == "paper" and parsed.split_column is not None:
        return parsed.frame["split"], f"paper: column '{parsed.split_column}' of {match.csv_path.name}"
    kind = "content" if split == "content" else "random"
    if kind == "content" and parsed.group_source is None:
        raise DatasetError([_no_groups_problem(spec, match)])
    fractions = _fractions(spec, match)
    if kind == "content":
        generated = content_split(names, groups, fractions, seed)
    else:
        generated = random_split(names, fractions, seed)
    path = saved_split_path(match.dataset_dir, spec.key, kind, seed)
    chosen, where = load_or_save_split(path, names, generated)
    reason = "" if split != "paper" else f" (the {match.layout} layout has no split column)"
    return chosen, f"generated {kind} split, seed {seed}{reason}, {where}"


def _no_groups_problem(spec: DatasetSpec, match: LayoutMatch) -> Problem:
    columns = " or ".join(match.rule.group_columns)
    originals = [name for rule in RULES[spec.key] if rule.layout == "original" for name in rule.csv_names]
    return Problem(match.csv_path, f"has no {columns} column, so a content split cannot group the images by "
                   f"content (grouping by image name would put the same {columns} in train and test)",
                   f"put the original release's {' or '.join(originals)} in the {spec.title} folder (vpkit reads "
                   f"the {columns} from it), or use split 'random' or 'paper'")


def _fractions(spec: DatasetSpec, match: LayoutMatch) -> tuple[float, float, float]:
    """Split proportions: the paper's, or those a synthetic set records for itself."""
    marker = match.dataset_dir / SYNTHETIC_MARKER
    try:
        recorded = json.loads(marker.read_text()).get("split_fractions") if marker.is_file() else None
    except (OSError, ValueError, AttributeError):
        recorded = None  # a damaged marker: fall back to the paper's proportions
    if recorded and len(recorded) == 3:
        return tuple(float(f) for f in recorded)  # type: ignore[return-value]
    return spec.fractions


def _count_problems(spec: DatasetSpec, table: IQATable, split: str) -> list[Problem]:
    problems = []
    if len(table) != spec.total:
        problems.append(Problem(table.csv_path, f"{spec.title} has {spec.total} images but this file lists "
                                f"{len(table)}", "use the complete dataset, or pass count_check='off' "
                                "(--counts off) for a deliberate subset"))
    elif split == "paper" and table.split_source.startswith("paper"):
        counts = tuple(table.split_counts().values())
        if counts != spec.paper_split:
            expected = "/".join(map(str, spec.paper_split))
            problems.append(Problem(table.csv_path, f"split sizes train/val/test are {'/'.join(map(str, counts))}, "
                                    f"the paper's are {expected}", "use the paper's split file unchanged"))
    return problems
