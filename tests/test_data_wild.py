"""Datasets as they are found in the wild: the exact headers of the public files (KonIQ-10k's two CSVs, AGIQA-3K's
data.csv, pyiqa's meta_info files) and the nested folders several public loaders unpack to."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _messages import raises_one_line
from test_data_layouts import agiqa_rows, koniq_rows, quiet_load, write_images

from vpkit.data import DatasetError, content_overlap
from vpkit.data.check import check_datasets

# Headers exactly as the files ship.
KONIQ_SCORES_HEADER = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total", "MOS", "SD", "MOS_zscore"]
PYIQA_KONIQ_HEADER = ["img_name", "mos", "std", "split", "c1", "c2", "c3", "c4", "c5", "c_total"]
AGIQA_DATA_HEADER = ["name", "prompt", "adj1", "adj2", "style", "mos_quality", "std_quality", "mos_align",
                     "std_align"]
PYIQA_AGIQA_HEADER = ["name", "mos_quality", "std_quality"]


def make_pyiqa_koniq(root):
    """pyiqa's meta_info_KonIQ10kDataset.csv as its scripts/process_koniq10k.py writes it: split 0/1/2."""
    frame = koniq_rows()
    write_images(root / "koniq10k" / "512x384", frame["image_name"].tolist())
    (root / "meta_info").mkdir()
    codes = frame["set"].map({"training": 0, "validation": 1, "test": 2})
    meta = pd.DataFrame({"img_name": frame["image_name"], "mos": frame["MOS"], "std": frame["SD"], "split": codes,
                         **{c: frame[c] for c in ["c1", "c2", "c3", "c4", "c5", "c_total"]}})
    assert list(meta.columns) == PYIQA_KONIQ_HEADER
    meta.to_csv(root / "meta_info" / "meta_info_KonIQ10kDataset.csv", index=False)
    return frame


def test_koniq_pyiqa_numeric_split_is_pyiqas_0_train_1_val_2_test(tmp_path):
    frame = make_pyiqa_koniq(tmp_path)
    table = quiet_load("koniq", tmp_path)
    expected = frame["set"].map({"training": "train", "validation": "val", "test": "test"})
    assert table.frame["split"].tolist() == expected.tolist()
    np.testing.assert_allclose(table.frame["label"], frame["MOS"] / 100)


def test_koniq_scores_file_without_zscore_says_which_column_became_the_label(tmp_path):
    frame = koniq_rows()
    write_images(tmp_path / "koniq10k" / "1024x768", frame["image_name"].tolist())
    scores = frame.drop(columns="set").assign(MOS=np.round(1 + frame["MOS"] / 25, 3), MOS_zscore=frame["MOS"])
    scores = scores[KONIQ_SCORES_HEADER]
    path = tmp_path / "koniq10k" / "koniq10k_scores_and_distributions.csv"
    scores.drop(columns="MOS_zscore").to_csv(path, index=False)
    with pytest.warns(UserWarning, match="no column 'MOS_zscore'.*the label is column 'MOS' / 5"):
        quiet_load("koniq", tmp_path)
    scores.to_csv(path, index=False)  # the file as released: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert quiet_load("koniq", tmp_path).scale == 100.0


def make_agiqa_pyiqa_meta(root, folder="AGIQA-3K", with_data_csv=False):
    """pyiqa's AGIQA-3K meta file: no prompt column (and no split)."""
    frame = agiqa_rows(n=40)
    write_images(root / folder / "images", frame["name"].tolist())
    (root / "meta_info").mkdir()
    frame[PYIQA_AGIQA_HEADER].to_csv(root / "meta_info" / "meta_info_AGIQA3KDataset.csv", index=False)
    if with_data_csv:
        frame[AGIQA_DATA_HEADER].to_csv(root / folder / "data.csv", index=False)
    return frame


def test_agiqa_pyiqa_meta_without_prompts_refuses_a_content_split(tmp_path):
    make_agiqa_pyiqa_meta(tmp_path)
    with raises_one_line(DatasetError, names=("prompt", "content", "data.csv"), fix="random"):
        quiet_load("agiqa", tmp_path, split="content")
    assert quiet_load("agiqa", tmp_path, split="random").group_source is None
    lines: list[str] = []
    check_datasets(tmp_path, ["agiqa"], count_check="off", progress=False, out=lines.append)
    content = next(line for line in lines if "content:" in line)
    assert "unknown" in content  # not "0 of N content groups ... shared"


def test_agiqa_pyiqa_meta_takes_the_prompts_from_the_original_data_csv(tmp_path):
    frame = make_agiqa_pyiqa_meta(tmp_path, with_data_csv=True)
    table = quiet_load("agiqa", tmp_path, layout="pyiqa", split="content")  # (auto would take data.csv itself)
    assert table.layout == "pyiqa" and "data.csv" in table.group_source
    assert table.frame["group"].tolist() == frame["prompt"].tolist()
    train = set(table.rows("train")["group"])
    assert not train & set(table.rows("test")["group"]) and not train & set(table.rows("val")["group"])
    assert (content_overlap(table.frame)["shared_groups"] == 0).all()


@pytest.mark.parametrize("score_file_at", ["inner", "outer"])
def test_agiqa_in_the_nested_layout_is_found_from_the_outer_folder(tmp_path, score_file_at):
    frame = agiqa_rows()
    inner = tmp_path / "AGIQA-3k" / "AGIQA-3k"
    write_images(inner / "Images", frame["name"].tolist())
    csv_folder = inner if score_file_at == "inner" else tmp_path / "AGIQA-3k"
    frame[AGIQA_DATA_HEADER].to_csv(csv_folder / "data.csv", index=False)
    table = quiet_load("agiqa", tmp_path, split="content")
    assert table.layout == "original" and table.image_dir == inner / "Images" and len(table) == len(frame)
