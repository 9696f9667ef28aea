"""What a run trained on: its image list (names, splits, labels and the files' digests) and fingerprints of it
(data.json, data-images.csv), and the refusal to continue a run on other data, naming the difference."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from vpkit.atomic import write_csv_atomic, write_json_atomic
from vpkit.runs.files import DATA_FILE, DATA_IMAGES_FILE, RunFolderError

SPLITS = ("train", "val", "test")
NAMED_FILES = 3  # image files with other contents named in a refusal; the rest are counted


def data_images(frame: pd.DataFrame, digests: list[str] | None = None) -> pd.DataFrame:
    """The image list that identifies a run's data: name, split, label, sorted (no paths: a moved copy of a
    dataset is the same data), and with `digests` (vpkit.preflight.check_images, in `frame`'s row order) each
    file's fingerprint as `file_digest`."""
    columns = frame[["name", "split", "label"]]
    if digests is not None:
        columns = columns.assign(file_digest=list(digests))
    return columns.sort_values(["split", "name"]).reset_index(drop=True)


def images_fingerprint(images: pd.DataFrame) -> str:
    rows = images[["name", "split", "label"]].itertuples(index=False)
    lines = "".join(f"{name}\t{split}\t{float(label)!r}\n" for name, split, label in rows)
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def files_fingerprint(images: pd.DataFrame) -> str:
    """One digest of every image file's contents (the `file_digest` column), by name."""
    lines = "".join(f"{name}\t{digest}\n" for name, digest in sorted(zip(images["name"], images["file_digest"])))
    return hashlib.sha256(lines.encode()).hexdigest()[:16]


def data_record(table, config, digests: list[str] | None = None) -> dict:
    """What a run trains on: dataset, root, layout, split scheme, images per split and a fingerprint of the
    image list (`data_images`) as a whole and per split; with `digests`, also of the files' contents."""
    images = data_images(table.frame, digests)
    record = {
        "dataset": table.dataset,
        "root": str(Path(config.dataset.root).expanduser().resolve()),
        "layout": table.layout,
        "split": config.dataset.split,
        "split_source": table.split_source,
        "limit": config.train.limit,
        "images": {split: int((images["split"] == split).sum()) for split in SPLITS},
        "fingerprint": images_fingerprint(images),
        "split_fingerprints": {
            split: images_fingerprint(images[images["split"] == split]) for split in SPLITS
        },
    }
    if digests is not None:
        from vpkit.preflight import FILE_DIGEST

        record["file_digest"] = FILE_DIGEST
        record["files_fingerprint"] = files_fingerprint(images)
    return record


def write_data_record(run_dir: str | Path, record: dict, images: pd.DataFrame) -> None:
    write_csv_atomic(Path(run_dir) / DATA_IMAGES_FILE, images)
    write_json_atomic(Path(run_dir) / DATA_FILE, record)


def read_data_record(run_dir: str | Path) -> dict | None:
    """data.json of a run folder (None for one that records no data: an imported prompt)."""
    path = Path(run_dir) / DATA_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise RunFolderError(f"{path}: unreadable ({error}); delete it to accept the data as it is now") from None


def check_same_data(run_dir: str | Path, record: dict, images: pd.DataFrame) -> str | None:
    """Refuse to continue (or report) the run in `run_dir` on other data than it was trained on, listing the
    difference: other images, splits or labels, and (when both `record` and the run's record fingerprint the
    files, see `data_record`) image files with other contents, counted and named. Returns a note when the data
    moved but is the same, or when the run's record predates file fingerprints (what could not be checked)."""
    run_dir = Path(run_dir)
    recorded = read_data_record(run_dir)
    if recorded is None:
        return None
    if recorded.get("fingerprint") != record["fingerprint"]:
        differences = _data_differences(run_dir, recorded, record, images)
        raise RunFolderError(
            f"{run_dir}: trained on other data ({'; '.join(differences)}); use the data it was trained on "
            f"(dataset.root {recorded.get('root')}), another run folder (--out), or --overwrite to start again"
        )
    files_checked = ("files_fingerprint" in recorded and "files_fingerprint" in record
                     and recorded.get("file_digest") == record.get("file_digest"))  # digests of one kind
    if files_checked and recorded["files_fingerprint"] != record["files_fingerprint"]:
        raise RunFolderError(
            f"{run_dir}: trained on other data ({_file_differences(run_dir, images)}); use the data it was trained "
            f"on (dataset.root {recorded.get('root')}), another run folder (--out), or --overwrite to start again"
        )
    unchecked = "files_fingerprint" in record and not files_checked
    not_checked = (" (the run was recorded by a vpkit that did not fingerprint image files this way, so their "
                   "contents cannot be compared; --overwrite trains it again and records them)")
    if recorded.get("root") != record["root"]:
        same = "image files" if files_checked else "images"
        return (
            f"{run_dir} was trained on the data at {recorded.get('root')}; the data at {record['root']} has the "
            f"same {same}, splits and labels, so it is used" + (not_checked if unchecked else "")
        )
    if unchecked:
        return f"{run_dir}: the images' names, splits and labels are the ones it trained on{not_checked}"
    return None


def _file_differences(run_dir: Path, images: pd.DataFrame) -> str:
    """'2 of its 48 image files have other contents than when it trained (e.g. 'a.png', 'b.png')'."""
    path = run_dir / DATA_IMAGES_FILE
    old = pd.read_csv(path, dtype={"name": str, "file_digest": str}) if path.is_file() else None
    if old is None or "file_digest" not in old:
        return f"the contents of its image files differ ({path.name} does not say which)"
    before = old.set_index("name")["file_digest"]
    after = images.set_index("name")["file_digest"].reindex(before.index)
    changed = before.index[(before != after).to_numpy()]
    if not len(changed):
        return f"the contents of its image files differ ({path.name} does not say which)"
    named = ", ".join(repr(name) for name in changed[:NAMED_FILES])
    more = f" and {len(changed) - NAMED_FILES} more" if len(changed) > NAMED_FILES else ""
    return (f"{len(changed)} of its {len(before)} image files hold other bytes than when it trained "
            f"({named}{more})")


def _data_differences(run_dir: Path, recorded: dict, record: dict, images: pd.DataFrame) -> list[str]:
    differences = [
        f"{key} {recorded.get(key)} -> {record[key]}"
        for key in ("root", "layout")
        if recorded.get(key) != record[key]
    ]
    images_path = run_dir / DATA_IMAGES_FILE
    if images_path.is_file():
        old = pd.read_csv(images_path, dtype={"name": str, "split": str})
        splits = [text for text in (_split_difference(split, old, images) for split in SPLITS) if text]
    else:
        old_counts = recorded.get("images", {})
        splits = [
            f"{split}: {old_counts.get(split)} -> {record['images'][split]} images, or other files or labels"
            for split in SPLITS
            if recorded.get("split_fingerprints", {}).get(split) != record["split_fingerprints"][split]
        ]
    fingerprints = f"image list fingerprint {recorded.get('fingerprint')} -> {record['fingerprint']}"
    return differences + (splits or [fingerprints])


def _split_difference(split: str, old: pd.DataFrame, new: pd.DataFrame) -> str:
    """'test: 2 images gained (e.g. 'a.png'), 1 lost (...), 3 labels changed (...)', or '' if the same."""
    before = old[old["split"] == split].set_index("name")["label"]
    after = new[new["split"] == split].set_index("name")["label"]
    gained, lost = after.index.difference(before.index), before.index.difference(after.index)
    common = after.index.intersection(before.index)
    changed = common[before[common].to_numpy(float) != after[common].to_numpy(float)]  # exact, as the fingerprint
    parts = []
    if len(gained):
        parts.append(f"{len(gained)} image(s) gained (e.g. {gained[0]!r})")
    if len(lost):
        parts.append(f"{len(lost)} lost (e.g. {lost[0]!r})")
    if len(changed):
        name = changed[0]
        parts.append(f"{len(changed)} label(s) changed (e.g. {name!r} {before[name]:g} -> {after[name]:g})")
    return f"{split}: {', '.join(parts)}" if parts else ""
