"""`vpkit data check ROOT`: what is there, in which layout, how it splits, and every problem with the fix."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

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
        if not datasets and not [m for m in find_layouts(spec, root) if layout in ("auto", m.layout)]:
            out(f"{spec.title}: not found under {root} (e.g. no {looked_for(spec, root, layout)[0]}; "
                f"--dataset {key} lists every path looked at)")
            continue
        checked += 1
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table, problems = build_table(key, root, layout, split, seed, count_check=count_check)
        if table is not None:
            problems += split_size_problems(table)
        if table is not None and decode_images:
            problems += unreadable_images(table, progress)
        failed |= bool(problems)
        _report(spec.title, root, table, problems, [str(w.message) for w in caught], all_errors, out)
    if checked == 0:
        out(f"no dataset found under {root}; see data/README.md for the layouts vpkit reads")
        return 1
    return 1 if failed else 0


def unreadable_images(table: IQATable, progress: bool = True) -> list[Problem]:
    """A Problem for every image that cannot be decoded (opened and fully read)."""
    paths = table.frame["path"].tolist()
    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        errors = list(tqdm(pool.map(_decode_error, paths), total=len(paths), desc=f"decoding {table.dataset}",
                           unit="img", disable=not progress))
    return [Problem(table.csv_path, f"image {name!r} cannot be read: {error}",
                    f"replace {path} with an intact copy from the original release", csv_line(pos))
            for pos, (name, path, error) in enumerate(zip(table.frame["name"], paths, errors)) if error]


def split_size_problems(table: IQATable) -> list[Problem]:
    """The splits a training run would refuse (vpkit.preflight): too few val/test images to correlate."""
    from vpkit.preflight import split_problems

    return [Problem(table.csv_path, what, fix) for what, fix in split_problems(table)]


def _decode_error(path: str) -> str | None:
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))  # still reads every byte, faster
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:  # PIL's decode failures
        return f"{type(exc).__name__}: {exc}"
    return None


def _report(title: str, root: Path, table: IQATable | None, problems: list[Problem], notes: list[str],
            all_errors: bool, out: Callable[[str], None]) -> None:
    out(f"{title}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    if table is not None:
        spec = SPECS[table.dataset]
        others = [m.layout for m in find_layouts(spec, root) if m.layout != table.layout]
        counts = table.split_counts()
        expected = "synthetic set" if table.synthetic else f"full dataset: {spec.total}"
        out(f"  layout:  {table.layout}" + (f" (also present: {', '.join(others)})" if others else ""))
        out(f"  scores:  {table.csv_path} (label = score / {table.scale:g})")
        out(f"  images:  {table.image_dir}")
        out(f"  split:   {table.split_source}")
        out(f"  counts:  train {counts['train']} | val {counts['val']} | test {counts['test']} | "
            f"total {len(table)} ({expected})")
        leak = content_overlap(table.frame).set_index("splits").loc["train/test"]
        out(f"  content: {int(leak['shared_groups'])} of the {int(leak['groups_second'])} content groups in test "
            f"also appear in train ({int(leak['images_second_shared'])} of {int(leak['images_second'])} test images)")
    for note in notes:
        out(f"  WARNING: {note}")
    shown = problems if all_errors else problems[:1]
    for problem in shown:
        out(f"  ERROR: {problem}")
    if len(problems) > len(shown):
        out(f"  ... {len(problems) - len(shown)} more problem(s); rerun with --all-errors to list them all")
