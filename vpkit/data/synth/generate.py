"""Write a synthetic demo dataset in exactly the paper's KADID layout:
OUT/kadid10k/images/I01.png, I01_10_03.png, ... and OUT/kadid10k/split_kadid10k.csv
(dist_img, ref_img, dmos, var, split), plus README.md and synthetic.json describing how it was made."""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.pool
import os
import shutil
import signal
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, features

from vpkit.atomic import write_csv_atomic
from vpkit.progress import tqdm

from ..specs import SPLIT_NAMES
from ..splits import split_sizes
from ..workers import available_cpus
from .distortions import LEVELS, TYPE_BY_NAME, TYPES, apply_distortion
from .references import Reference, reference_images
from .scores import CURVE_WEIGHT, synthetic_dmos, synthetic_var

SYNTH_FORMAT = 1
DEFAULT_SIZE = (288, 224)  # W x H: the default 224 px model sees these almost unscaled
DEFAULT_N_REFS = 160  # x 5 demo types x 5 levels = 4,000 images; 16 references (400 images) in test
SMALL_N_REFS = 16
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
DEMO_REFERENCE_SEED = 0
PRETRAIN_REFERENCE_SEED = 1000  # the pretraining set's references never appear in the demo set
MARKER = "synthetic.json"


def generate(out_root: str | Path, n_refs: int = DEFAULT_N_REFS, distortions: list[str] | tuple[str, ...] | None = None,
             levels: tuple[int, ...] = LEVELS, size: tuple[int, int] = DEFAULT_SIZE, seed: int = 0,
             reference_seed: int | None = None, include_photos: bool = True, progress: bool = True,
             workers: int | None = None) -> Path:
    """Generate the set under `out_root/kadid10k/` and return that folder.

    distortions: names from DISTORTIONS (None: every type this Pillow supports). levels: subset of 1..5.
    size: (W, H). seed: distortion randomness and the split; reference_seed: the reference images
    (default: `seed`). The split keeps each reference's images together (80/10/10 of the references).
    An earlier synthetic set in the same place is replaced; any other existing folder is left alone
    and an error raised. Deterministic: the same arguments give byte-identical files."""
    names = _check_distortions(distortions)
    levels = _check_levels(levels)
    width, height = int(size[0]), int(size[1])
    ref_seed = seed if reference_seed is None else reference_seed
    target = Path(out_root).expanduser() / "kadid10k"
    _refuse_foreign_folder(target)
    refs = reference_images(n_refs, (width, height), seed=ref_seed, photos=include_photos)
    digits = max(2, len(str(n_refs)))
    ref_names = [f"I{i + 1:0{digits}d}" for i in range(n_refs)]
    staging = target.parent / f".kadid10k.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "images").mkdir(parents=True)
    try:
        rows = _write_images(staging / "images", refs, ref_names, names, levels, seed, progress, workers)
        split_of = _reference_split(ref_names, seed)
        frame = pd.DataFrame(rows, columns=["dist_img", "ref_img", "dmos", "var"]).sort_values("dist_img")
        frame["split"] = frame["ref_img"].str.removesuffix(".png").map(split_of)
        write_csv_atomic(staging / "split_kadid10k.csv", frame)
        settings = {
            "generator": "vpkit.data.synth", "format": SYNTH_FORMAT, "n_refs": n_refs, "distortions": list(names),
            "levels": list(levels), "size": [width, height], "seed": seed, "reference_seed": ref_seed,
            "include_photos": include_photos, "split_fractions": list(SPLIT_FRACTIONS),
            "split": "by reference (content-disjoint)", "score": "see README.md",
            "references": {n: r.source for n, r in zip(ref_names, refs)},
            "type_ids": {n: TYPE_BY_NAME[n].type_id for n in names},
        }
        (staging / MARKER).write_text(json.dumps(settings, indent=2))
        (staging / "README.md").write_text(_readme(settings, frame))
        _swap_into_place(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _check_distortions(distortions) -> tuple[str, ...]:
    if distortions is None:
        supported = [t.name for t in TYPES if t.name != "jpeg2000" or features.check("jpg_2000")]
        if len(supported) < len(TYPES):
            warnings.warn("this Pillow has no JPEG 2000 codec: jpeg2000 left out", stacklevel=3)
        return tuple(supported)
    if isinstance(distortions, str):
        raise TypeError("distortions must be a list of names, e.g. ['jpeg', 'pixelate'], not one string")
    unknown = [d for d in distortions if d not in TYPE_BY_NAME]
    if unknown:
        raise ValueError(f"unknown distortion(s) {unknown}; known: {', '.join(TYPE_BY_NAME)}")
    if not distortions:
        raise ValueError("distortions is empty: name at least one")
    return tuple(sorted(dict.fromkeys(distortions), key=lambda n: TYPE_BY_NAME[n].type_id))


def _check_levels(levels) -> tuple[int, ...]:
    levels = tuple(sorted({int(level) for level in levels}))
    if not levels or any(level not in LEVELS for level in levels):
        raise ValueError(f"levels must be a non-empty subset of 1..5, got {levels}")
    return levels


def _refuse_foreign_folder(target: Path) -> None:
    if target.exists() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise FileExistsError(f"{target} exists and is not a vpkit synthetic set (no {MARKER}); it is left "
                              "untouched. Choose another output folder.")


def _write_images(folder: Path, refs: list[Reference], ref_names: list[str], names: tuple[str, ...],
                  levels: tuple[int, ...], seed: int, progress: bool, workers: int | None) -> list[tuple]:
    tasks = [(folder, ref.image, ref_name, index, names, levels, seed)
             for index, (ref, ref_name) in enumerate(zip(refs, ref_names))]
    per_ref = len(names) * len(levels)
    workers = min(available_cpus(), 4) if workers is None else max(1, int(workers))
    rows: list[tuple] = []
    with tqdm(total=len(tasks) * per_ref, desc="synthetic set", unit="img", disable=not progress) as bar:
        if workers == 1 or len(tasks) == 1:
            results = map(_distort_reference, tasks)
            for result in results:
                rows += result
                bar.update(per_ref)
        else:
            # Leaving the block (done, an error, Ctrl-C) terminates the workers, so none writes into the staging
            # folder after the caller has removed it.
            with _worker_pool(workers) as pool:
                for result in pool.imap(_distort_reference, tasks):
                    rows += result
                    bar.update(per_ref)
    return rows


def _worker_pool(workers: int) -> multiprocessing.pool.Pool:
    """Worker processes that ignore Ctrl-C: a terminal sends SIGINT to every process of the group, and a worker
    that took it would print its own KeyboardInterrupt traceback beside (often before) the parent's one line. The
    parent alone stops, and terminates them. SIGINT is ignored while they start, so they are born ignoring it
    (fork and spawn keep an ignored signal), and the initializer covers a forkserver's."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return multiprocessing.Pool(workers, initializer=_ignore_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return multiprocessing.Pool(workers, initializer=_ignore_ctrl_c)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _distort_reference(task: tuple) -> list[tuple]:
    """All distorted versions of one reference; each image's randomness is seeded by
    (seed, reference index, KADID type id, level), so it doesn't depend on order or workers."""
    folder, reference, ref_name, index, names, levels, seed = task
    _save_png(reference, folder / f"{ref_name}.png")
    rows = []
    for name in names:
        type_id = TYPE_BY_NAME[name].type_id
        for level in levels:
            rng = np.random.default_rng([seed, index, type_id, level])
            distorted = apply_distortion(name, reference, level, rng)
            file_name = f"{ref_name}_{type_id:02d}_{level:02d}.png"
            _save_png(distorted, folder / file_name)
            dmos = synthetic_dmos(name, level, reference, distorted)
            rows.append((file_name, f"{ref_name}.png", dmos, synthetic_var(dmos)))
    return rows


def _save_png(pixels: np.ndarray, path: Path) -> None:
    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)


def _reference_split(ref_names: list[str], seed: int) -> dict[str, str]:
    """Whole references to train/val/test (80/10/10 of the references, at least one each from 3 up)."""
    order = [ref_names[k] for k in np.random.default_rng([seed, 99]).permutation(len(ref_names))]
    n_train, n_val, _ = split_sizes(len(order), SPLIT_FRACTIONS)
    return {name: "train" if k < n_train else "val" if k < n_train + n_val else "test"
            for k, name in enumerate(order)}


def _swap_into_place(staging: Path, target: Path) -> None:
    old = target.parent / f".kadid10k.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def _readme(settings: dict, frame: pd.DataFrame) -> str:
    counts = frame["split"].value_counts()
    refs_per_split = frame.groupby("split")["ref_img"].nunique()
    split_lines = "\n".join(f"- {s}: {int(counts.get(s, 0))} images from {int(refs_per_split.get(s, 0))} references"
                            for s in SPLIT_NAMES)
    types = "\n".join(f"- {TYPE_BY_NAME[n].type_id:02d} {n} ({TYPE_BY_NAME[n].family})" for n in settings["distortions"])
    return f"""# Synthetic KADID-style dataset (generated by vpkit)

THE SCORES IN split_kadid10k.csv ARE NOT HUMAN OPINIONS. They are a deterministic function of the
distortion type, its level and a measured fidelity:

    dmos = {CURVE_WEIGHT} * curve[type][level] + {1 - CURVE_WEIGHT:.2f} * (1 + 4 * SSIM(reference, distorted))

rounded to two decimals in [1, 5]; `curve` follows the trend of KADID-10k's published DMOS over the
five levels of each type (vpkit.data.synth.scores.SEVERITY_CURVES). `var` is a placeholder spread,
not a measurement. Use this set to try vpkit end to end, never to report IQA results.

Layout: the paper's KADID-10k layout (images/ + split_kadid10k.csv with dist_img, ref_img, dmos, var,
split), so `vpkit.data.load_table("kadid", "{'<OUT>'}")` reads it. File names follow KADID:
I<reference>_<type id>_<level>.png; the references are images/I<reference>.png.

- references: {settings['n_refs']} (seed {settings['reference_seed']}, photographs from scikit-image:
  {settings['include_photos']}); sources are listed in synthetic.json
- size: {settings['size'][0]}x{settings['size'][1]} (W x H); levels {settings['levels']}; distortion seed {settings['seed']}
- images: {len(frame)} distorted + {settings['n_refs']} references

Distortion types (KADID-10k numbering):
{types}

Split, by reference (no reference's content is in two splits):
{split_lines}

Photographs come from scikit-image's bundled data (skimage.data); see scikit-image's documentation
for each photograph's source and licence. Regenerate with:

    vpkit data synth OUT --n-refs {settings['n_refs']} --seed {settings['seed']} --reference-seed {settings['reference_seed']}
"""
