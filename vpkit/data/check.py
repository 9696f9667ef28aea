"""`vpkit data check ROOT`: what is there, in which layout, how it splits, and every problem with the fix."""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vpkit.progress import tqdm

from .images import (
    MODE_NOTES,
    TOO_LARGE,
    ImageNote,
    describe_notes,
    image_notes,
    image_problem,
    large_image_warnings_told,
)
from .layouts import find_layouts, looked_for
from .problems import Problem, csv_line
from .specs import SPECS, dataset_spec
from .splits import content_overlap
from .table import IQATable, build_table
from .workers import available_cpus


def check_datasets(root: str | Path, datasets: list[str] | None = None, *, layout: str = "auto",
                   split: str = "paper", seed: int = 42, count_check: str = "warn", all_errors: bool = False,
                   decode_images: bool = True, progress: bool = True, out: Callable[[str], None] = print) -> int:
    """Check each dataset under `root` (all three, skipping absent ones, unless `datasets` names some)
    and print a report. Returns 0 when everything found is usable, 1 otherwise."""
    root = Path(root).expanduser()
    keys = [dataset_spec(d).key for d in datasets] if datasets else list(SPECS)
    failed, checked = False, 0
    for key in keys:
        spec = SPECS[key]
        present = find_layouts(spec, root)
        if not datasets and not [m for m in present if layout in ("auto", m.layout)]:
            elsewhere = f"; the {present[0].layout} layout is there: use --layout auto" if present else ""
            out(f"{spec.title}: not found under {root} (e.g. no {looked_for(spec, root, layout)[0]}; "
                f"--dataset {key} lists every path looked at{elsewhere})")
            continue
        checked += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table, problems = build_table(key, root, layout, split, seed, count_check=count_check)
        if table is not None:
            problems += split_size_problems(table)
        modes, notes = None, []
        if table is not None and decode_images:
            bad_images, modes, found = decode_report(table, progress)
            problems += bad_images
            notes = describe_notes(found)
        failed |= bool(problems)
        _report(spec.title, root, table, problems, [str(w.message) for w in caught] + notes, all_errors, out, modes)
    if checked == 0:
        out(f"no dataset found under {root}; see data/README.md for the layouts vpkit reads")
        return 1
    return 1 if failed else 0


def decode_report(table: IQATable, progress: bool = True) -> tuple[list[Problem], Counter, list[ImageNote]]:
    """Decode every image in full: (a Problem for each unusable one, how many images of each PIL mode were found,
    notes on usable ones: an EXIF orientation vpkit ignores, a size over Pillow's warning limit)."""
    paths = table.frame["path"].tolist()
    with large_image_warnings_told(), ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        results = list(tqdm(pool.map(_decode_with_notes, paths), total=len(paths), desc=f"decoding {table.dataset}",
                            unit="img", disable=not progress))
    problems = [Problem(table.csv_path, f"image {name!r} cannot be read or used: {error}", _fix(error, path),
                        csv_line(pos))
                for pos, (name, path, (_, error, _)) in enumerate(zip(table.frame["name"], paths, results)) if error]
    notes = [note for _, error, found in results if not error for note in found]
    return problems, Counter(mode for mode, _, _ in results if mode is not None), notes


def _decode_with_notes(path: str) -> tuple[str | None, str | None, list[ImageNote]]:
    mode, error = image_problem(path, full=True)
    return mode, error, [] if error else image_notes(path)


def _fix(error: str, path: str) -> str:
    if error.startswith(TOO_LARGE):  # an intact file over Pillow's limit: the error says how to raise it
        return "raise the limit as said, or use a smaller copy of the image"
    return f"replace {path} with an intact 8-bit or 16-bit copy from the original release"


def split_size_problems(table: IQATable) -> list[Problem]:
    """The splits a training run would refuse (vpkit.preflight): too few val/test images to correlate."""
    from vpkit.preflight import split_problems

    return [Problem(table.csv_path, what, fix) for what, fix in split_problems(table)]


def describe_modes(modes: Counter) -> str:
    """'RGB 395, I;16 5 (16-bit grey, scaled to 8 bits)': the image modes found, most common first."""
    parts = []
    for mode, count in modes.most_common():
        note = MODE_NOTES.get(mode)
        parts.append(f"{mode} {count}" + (f" ({note})" if note else ""))
    return ", ".join(parts) or "none decoded"


def _report(title: str, root: Path, table: IQATable | None, problems: list[Problem], notes: list[str],
            all_errors: bool, out: Callable[[str], None], modes: Counter | None = None) -> None:
    out(f"{title}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    if table is not None:
        spec = SPECS[table.dataset]
        others = [m.layout for m in find_layouts(spec, root) if m.layout != table.layout]
        counts = table.split_counts()
        expected = "synthetic set" if table.synthetic else f"full dataset: {spec.total}"
        out(f"  layout:  {table.layout}" + (f" (also present: {', '.join(others)})" if others else ""))
        out(f"  scores:  {table.csv_path} (label = score / {table.scale:g})")
        out(f"  images:  {table.image_dir}")
        if modes is not None:
            out(f"  modes:   {describe_modes(modes)}")
        out(f"  split:   {table.split_source}")
        out(f"  counts:  train {counts['train']} | val {counts['val']} | test {counts['test']} | "
            f"total {len(table)} ({expected})")
        if table.group_source is None:
            out(f"  content: unknown: {table.csv_path.name} does not say which images share content, so shared "
                "content between the splits cannot be checked (and --split-scheme content is refused)")
        else:
            leak = content_overlap(table.frame).set_index("splits").loc["train/test"]
            out(f"  content: {int(leak['shared_groups'])} of the {int(leak['groups_second'])} content groups in "
                f"test also appear in train ({int(leak['images_second_shared'])} of {int(leak['images_second'])} "
                f"test images; groups: {table.group_source})")
    for note in notes:
        out(f"  WARNING: {note}")
    shown = problems if all_errors else problems[:1]
    for problem in shown:
        out(f"  ERROR: {problem}")
    if len(problems) > len(shown):
        out(f"  ... {len(problems) - len(shown)} more problem(s); rerun with --all-errors to list them all")
