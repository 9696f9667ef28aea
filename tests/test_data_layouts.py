"""Loading KADID-10k, KonIQ-10k and AGIQA-3K from tiny fixtures in each layout users have."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _messages import raises_one_line
from PIL import Image

from vpkit.data import DatasetError, content_overlap, load_table, random_split, split_sizes
from vpkit.data.specs import SPECS

# -- fixture builders (also used by the other test_data_* files) -------------------------------------


def write_images(folder: Path, names: list[str], size: tuple[int, int] = (12, 10), seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)


def kadid_rows(n_refs: int = 3, n_types: int = 2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for ref in range(1, n_refs + 1):
        for kind in range(1, n_types + 1):
            for level in range(1, 6):
                rows.append({"dist_img": f"I{ref:02d}_{kind:02d}_{level:02d}.png", "ref_img": f"I{ref:02d}.png",
                             "dmos": round(float(rng.uniform(1, 5)), 2), "var": 0.5})
    frame = pd.DataFrame(rows)
    frame["split"] = np.resize(["train", "train", "val", "train", "test"], len(frame))
    return frame


def make_kadid(root: Path, layout: str = "paper", **kwargs) -> pd.DataFrame:
    frame = kadid_rows(**kwargs)
    folder = root / "kadid10k"
    write_images(folder / "images", frame["dist_img"].tolist())
    if layout == "paper":
        frame.to_csv(folder / "split_kadid10k.csv", index=False)
    elif layout == "original":
        frame.drop(columns="split").to_csv(folder / "dmos.csv", index=False)
    else:
        (root / "meta_info").mkdir(exist_ok=True)
        pyiqa = frame.rename(columns={"ref_img": "ref_name", "dist_img": "dist_name", "var": "std"})
        pyiqa[["ref_name", "dist_name", "dmos", "std"]].to_csv(root / "meta_info" / "meta_info_KADID10kDataset.csv",
                                                               index=False)
    return frame


def koniq_rows(n: int = 20, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"image_name": [f"{1000 + i}.jpg" for i in range(n)]})
    for k in range(1, 6):
        frame[f"c{k}"] = 0.2
    frame["c_total"] = 100
    frame["MOS"] = np.round(rng.uniform(3, 95, n), 3)
    frame["SD"] = 0.5
    frame["set"] = np.resize(["training", "training", "validation", "test"], n)
    return frame


def make_koniq(root: Path, layout: str = "paper", folders: tuple[str, ...] = ("1024x768",), **kwargs) -> pd.DataFrame:
    frame = koniq_rows(**kwargs)
    folder = root / "koniq10k"
    for sub in folders:
        write_images(folder / sub, frame["image_name"].tolist(), size=(16, 12) if sub == "1024x768" else (8, 6))
    if layout == "paper":
        frame.to_csv(folder / "koniq10k_distributions_sets.csv", index=False)
    elif layout == "original":
        original = frame.drop(columns="set").rename(columns={"MOS": "MOS_zscore"})
        original["MOS"] = np.round(1 + original["MOS_zscore"] / 25, 3)  # the release's 1-5 scale
        original.to_csv(folder / "koniq10k_scores_and_distributions.csv", index=False)
    else:
        (root / "meta_info").mkdir(exist_ok=True)
        split = frame["set"].map({"training": "train", "validation": "val", "test": "test"})
        pd.DataFrame({"img_name": frame["image_name"], "mos": frame["MOS"], "std": 0.5, "official_split": split}
                     ).to_csv(root / "meta_info" / "meta_info_KonIQ10kDataset.csv", index=False)
    return frame


def agiqa_rows(n: int = 20, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "name": [f"model{i % 3}_normal_{i:03d}.jpg" for i in range(n)],
        "prompt": [f"a prompt, number {i // 4}" for i in range(n)],  # commas inside a quoted field
        "adj1": "", "adj2": "", "style": "",
        "mos_quality": np.round(rng.uniform(0.2, 4.5, n), 4), "std_quality": 0.4,
        "mos_align": 1.0, "std_align": 0.5,
        "split": np.resize(["train", "train", "train", "val", "test"], n),
    })


def make_agiqa(root: Path, layout: str = "paper", folder_name: str = "agiqa3k", **kwargs) -> pd.DataFrame:
    frame = agiqa_rows(**kwargs)
    folder = root / folder_name
    write_images(folder / "images", frame["name"].tolist())
    if layout == "paper":
        frame.to_csv(folder / "split_agiqa3k.csv", index=False)
    elif layout == "original":
        frame.drop(columns="split").to_csv(folder / "data.csv", index=False)
    else:
        (root / "meta_info").mkdir(exist_ok=True)
        frame.drop(columns="split").to_csv(root / "meta_info" / "meta_info_AGIQA3KDataset.csv", index=False)
    return frame


def quiet_load(*args, **kwargs):
    kwargs.setdefault("count_check", "off")
    return load_table(*args, **kwargs)


# -- KADID ------------------------------------------------------------------------------------------


def test_kadid_paper_layout(tmp_path):
    frame = make_kadid(tmp_path, "paper")
    table = quiet_load("kadid", tmp_path)
    assert (table.dataset, table.layout, table.scale) == ("kadid", "paper", 5.0)
    assert table.image_dir == tmp_path / "kadid10k" / "images"
    assert list(table.frame.columns) == ["name", "path", "mos", "label", "split", "group"]
    assert table.frame["name"].tolist() == frame["dist_img"].tolist()
    np.testing.assert_allclose(table.frame["label"], frame["dmos"] / 5)
    assert table.frame["split"].tolist() == frame["split"].tolist()
    assert table.frame["group"].tolist() == frame["ref_img"].tolist()
    assert all(Path(p).is_file() for p in table.frame["path"])
    assert table.split_source.startswith("paper")
    assert table.split_counts() == frame["split"].value_counts().reindex(["train", "val", "test"]).to_dict()


def test_kadid_original_layout_generates_and_saves_a_paper_style_split(tmp_path):
    frame = make_kadid(tmp_path, "original", n_refs=4)
    table = quiet_load("kadid", tmp_path, seed=7)
    assert table.layout == "original"
    saved = tmp_path / "kadid10k" / "vpkit_split_kadid_random_seed7.csv"
    assert saved.is_file() and "saved to" in table.split_source
    assert table.split_counts() == dict(zip(["train", "val", "test"], split_sizes(len(frame), SPECS["kadid"].fractions)))
    again = quiet_load("kadid", tmp_path, seed=7)
    assert again.frame["split"].tolist() == table.frame["split"].tolist()
    assert "read from" in again.split_source
    other = quiet_load("kadid", tmp_path, seed=8)
    assert other.frame["split"].tolist() != table.frame["split"].tolist()


def test_a_saved_split_is_reused_as_written(tmp_path):
    make_kadid(tmp_path, "original")
    quiet_load("kadid", tmp_path, split="random", seed=3)
    saved = tmp_path / "kadid10k" / "vpkit_split_kadid_random_seed3.csv"
    edited = pd.read_csv(saved)
    edited["split"] = "test"
    edited.loc[0, "split"] = "train"
    edited.to_csv(saved, index=False)
    table = quiet_load("kadid", tmp_path, split="random", seed=3)
    assert table.split_counts() == {"train": 1, "val": 0, "test": len(edited) - 1}


def test_a_users_file_is_never_overwritten(tmp_path):
    make_kadid(tmp_path, "original")
    users = tmp_path / "kadid10k" / "vpkit_split_kadid_random_seed42.csv"
    users.write_text("name,split\nsomething_else.png,train\n")
    with raises_one_line(DatasetError, names=(users,)):
        quiet_load("kadid", tmp_path, split="random")
    assert users.read_text() == "name,split\nsomething_else.png,train\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write to read-only folders")
def test_read_only_data_still_loads(tmp_path):
    make_kadid(tmp_path, "original")
    folder = tmp_path / "kadid10k"
    folder.chmod(0o555)
    try:
        table = quiet_load("kadid", tmp_path)
    finally:
        folder.chmod(0o755)
    assert "not saved" in table.split_source


def test_kadid_pyiqa_layout(tmp_path):
    frame = make_kadid(tmp_path, "pyiqa")
    table = quiet_load("kadid", tmp_path)
    assert table.layout == "pyiqa"
    assert table.csv_path == tmp_path / "meta_info" / "meta_info_KADID10kDataset.csv"
    assert table.image_dir == tmp_path / "kadid10k" / "images"
    np.testing.assert_allclose(table.frame["mos"], frame["dmos"])
    assert table.frame["group"].tolist() == frame["ref_img"].tolist()
    assert "has no split column" in table.split_source


def test_auto_prefers_the_paper_layout_and_layout_can_be_forced(tmp_path):
    make_kadid(tmp_path, "paper")
    make_kadid(tmp_path, "original")
    assert quiet_load("kadid", tmp_path).layout == "paper"
    assert quiet_load("kadid", tmp_path, layout="original").layout == "original"
    with raises_one_line(DatasetError, names=("pyiqa", tmp_path)):
        quiet_load("kadid", tmp_path, layout="pyiqa")


def test_a_forced_layout_that_is_absent_names_the_layout_that_is_there(tmp_path):
    make_kadid(tmp_path, "paper")
    with pytest.raises(DatasetError) as error:
        quiet_load("kadid", tmp_path, layout="pyiqa")
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert f"but the paper layout is there ({tmp_path / 'kadid10k' / 'split_kadid10k.csv'})" in message
    assert message.endswith("Fix: use layout auto (dataset.layout: auto in a config, --layout auto) or paper")


def test_data_check_with_a_forced_layout_names_the_layout_that_is_there(tmp_path):
    from vpkit.data.check import check_datasets

    make_kadid(tmp_path, "paper")
    lines = []
    assert check_datasets(tmp_path, layout="pyiqa", decode_images=False, progress=False, out=lines.append) == 1
    assert "KADID-10k: not found under" in lines[0] and "the paper layout is there: use --layout auto" in lines[0]


def test_root_may_be_the_dataset_folder_itself(tmp_path):
    make_kadid(tmp_path, "paper")
    assert len(quiet_load("kadid", tmp_path / "kadid10k")) == 30


def test_content_split_keeps_references_apart_and_the_paper_split_leaks(tmp_path):
    make_kadid(tmp_path, "paper", n_refs=10, n_types=2)
    paper = quiet_load("kadid", tmp_path)
    leak = content_overlap(paper.frame).set_index("splits")
    assert leak.loc["train/test", "shared_groups"] == leak.loc["train/test", "groups_second"] > 0
    content = quiet_load("kadid", tmp_path, split="content", seed=1)
    overlap = content_overlap(content.frame)
    assert (overlap["shared_groups"] == 0).all()
    assert set(content.frame["split"]) == {"train", "val", "test"}
    assert content.split_counts() == {"train": 80, "val": 10, "test": 10}


def test_count_check_warns_errors_or_stays_quiet(tmp_path):
    make_kadid(tmp_path, "paper")
    with pytest.warns(UserWarning, match="KADID-10k has 10125 images"):
        load_table("kadid", tmp_path)
    with raises_one_line(DatasetError, names=("10125",), fix="count_check='off'"):
        load_table("kadid", tmp_path, count_check="error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_table("kadid", tmp_path, count_check="off")


def test_split_sizes_reproduce_the_papers_counts():
    for spec in SPECS.values():
        assert split_sizes(spec.total, spec.fractions) == spec.paper_split
    names = pd.Series([f"I{i:05d}.png" for i in range(10_125)])
    split = random_split(names, SPECS["kadid"].fractions, seed=0)
    assert split.value_counts().to_dict() == {"train": 8100, "test": 1013, "val": 1012}
    shuffled = names.sample(frac=1.0, random_state=1)
    assert random_split(shuffled, SPECS["kadid"].fractions, 0).sort_index().equals(split)


# -- KonIQ ------------------------------------------------------------------------------------------


def test_koniq_paper_layout_prefers_1024x768(tmp_path):
    frame = make_koniq(tmp_path, "paper", folders=("1024x768", "512x384"))
    table = quiet_load("koniq", tmp_path)
    assert table.image_dir == tmp_path / "koniq10k" / "1024x768"
    np.testing.assert_allclose(table.frame["label"], frame["MOS"] / 100)
    assert table.frame["split"].tolist() == frame["set"].map(
        {"training": "train", "validation": "val", "test": "test"}).tolist()
    assert table.frame["group"].tolist() == table.frame["name"].tolist()


def test_koniq_uses_512x384_when_that_is_what_exists(tmp_path):
    make_koniq(tmp_path, "paper", folders=("512x384",))
    assert quiet_load("koniq", tmp_path).image_dir == tmp_path / "koniq10k" / "512x384"
    other = tmp_path / "elsewhere"
    write_images(other, koniq_rows()["image_name"].tolist())
    assert quiet_load("koniq", tmp_path, image_dir=other).image_dir == other


def test_koniq_original_release_uses_the_0_100_zscore_mos(tmp_path):
    frame = make_koniq(tmp_path, "original")
    table = quiet_load("koniq", tmp_path)
    assert (table.layout, table.scale) == ("original", 100.0)
    np.testing.assert_allclose(table.frame["label"], frame["MOS"] / 100)
    csv = tmp_path / "koniq10k" / "koniq10k_scores_and_distributions.csv"
    pd.read_csv(csv).drop(columns="MOS_zscore").to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="label is column 'MOS' / 5"):
        five_point = quiet_load("koniq", tmp_path, seed=1)
    assert five_point.scale == 5.0
    np.testing.assert_allclose(five_point.frame["label"], np.round(1 + frame["MOS"] / 25, 3) / 5)


def test_koniq_pyiqa_layout_uses_its_official_split(tmp_path):
    frame = make_koniq(tmp_path, "pyiqa", folders=("512x384",))
    table = quiet_load("koniq", tmp_path)
    assert table.layout == "pyiqa" and "official_split" in table.split_source
    assert table.split_counts()["val"] == (frame["set"] == "validation").sum()


# -- AGIQA ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("folder_name", ["agiqa3k", "AGIQA-3K"])
def test_agiqa_paper_layout_in_either_folder_name(tmp_path, folder_name):
    frame = make_agiqa(tmp_path, "paper", folder_name=folder_name)
    table = quiet_load("agiqa", tmp_path)
    assert table.image_dir == tmp_path / folder_name / "images"
    np.testing.assert_allclose(table.frame["label"], frame["mos_quality"] / 5)
    assert table.frame["group"].tolist() == frame["prompt"].tolist()
    assert table.frame["split"].tolist() == frame["split"].tolist()


def test_agiqa_original_layout_with_images_beside_data_csv(tmp_path):
    frame = make_agiqa(tmp_path, "original", folder_name="AGIQA-3K")
    folder = tmp_path / "AGIQA-3K"
    for image in (folder / "images").iterdir():
        image.rename(folder / image.name)
    (folder / "images").rmdir()
    table = quiet_load("agiqa", tmp_path, split="content")
    assert table.layout == "original" and table.image_dir == folder.resolve()
    assert (content_overlap(table.frame)["shared_groups"] == 0).all()
    assert len(table) == len(frame)


def test_agiqa_pyiqa_layout(tmp_path):
    make_agiqa(tmp_path, "pyiqa", folder_name="AGIQA-3K")
    table = quiet_load("agiqa", tmp_path)
    assert table.layout == "pyiqa" and table.image_dir == tmp_path / "AGIQA-3K" / "images"


def test_unknown_names_are_rejected(tmp_path):
    with raises_one_line(ValueError, names=("'tid2013'", "kadid")):
        load_table("tid2013", tmp_path)
    make_kadid(tmp_path)
    with raises_one_line(ValueError, names=("'official'", "random")):
        load_table("kadid", tmp_path, split="official")
    with raises_one_line(ValueError, names=("'mine'", "pyiqa")):
        load_table("kadid", tmp_path, layout="mine")


def test_public_names_resolve():
    from vpkit import data

    assert sorted(data.__all__) == sorted(name for names in data._EXPORTS.values() for name in names)
    assert all(getattr(data, name) is not None for name in data.__all__)
    with pytest.raises(AttributeError):
        data.not_a_name  # noqa: B018
