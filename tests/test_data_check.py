"""Bad input gets a clear error naming the file, the line and the fix; `vpkit data check` reports it."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pandas as pd
import pytest
from _messages import raises_one_line
from test_data_layouts import make_agiqa, make_kadid, make_koniq

from vpkit.data import DatasetError, load_table
from vpkit.data.check import check_datasets
from vpkit.data.cli import main, register


def load(root, dataset="kadid", **kwargs):
    return load_table(dataset, root, count_check="off", **kwargs)


def edit_csv(path, change):
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    change(frame)
    frame.to_csv(path, index=False)


def test_missing_root_folder(tmp_path):
    with raises_one_line(DatasetError, names=(tmp_path / "nowhere",)):
        load(tmp_path / "nowhere")


def test_missing_score_file_lists_where_it_looked(tmp_path):
    (tmp_path / "kadid10k" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError) as error:
        load(tmp_path)
    message = str(error.value)
    assert "no KADID-10k score file found" in message
    folders = "{kadid10k,KADID-10k,kadid-10k,KADID10k}"  # every folder name tried, not just the first two
    assert f"split_kadid10k.csv or dmos.csv in {tmp_path}/{folders}, in the nested {tmp_path}/{folders}/{folders}" \
        in message
    assert str(tmp_path / "meta_info" / "meta_info_KADID10kDataset.csv") in message
    assert "Fix:" in message


def test_missing_image_folder(tmp_path):
    make_kadid(tmp_path)
    (tmp_path / "kadid10k" / "images").rename(tmp_path / "kadid10k" / "pictures")
    with raises_one_line(DatasetError, names=(tmp_path, "images")):
        load(tmp_path)


def test_missing_image_names_the_file_and_line(tmp_path):
    frame = make_kadid(tmp_path)
    (tmp_path / "kadid10k" / "images" / frame["dist_img"][4]).unlink()
    with pytest.raises(DatasetError) as error:
        load(tmp_path)
    message = str(error.value)
    assert "split_kadid10k.csv, line 6" in message
    assert f"image '{frame['dist_img'][4]}' is listed" in message
    assert "restore the image file" in message


def test_missing_columns_are_named_with_the_columns_found(tmp_path):
    make_kadid(tmp_path)
    def rename(frame):
        frame.columns = ["score" if c == "dmos" else c for c in frame.columns]

    edit_csv(tmp_path / "kadid10k" / "split_kadid10k.csv", rename)
    with raises_one_line(DatasetError, names=(tmp_path / "kadid10k" / "split_kadid10k.csv", "dmos", "'dist_img', 'ref_img', 'score'")):
        load(tmp_path)


def test_label_out_of_range(tmp_path):
    make_kadid(tmp_path)
    edit_csv(tmp_path / "kadid10k" / "split_kadid10k.csv", lambda f: f.loc.__setitem__((2, "dmos"), "7.5"))
    with raises_one_line(DatasetError, names=(tmp_path / "kadid10k" / "split_kadid10k.csv", "line 4", "'dmos'", "7.5", "[1, 5]")):
        load(tmp_path)


def test_score_that_is_not_a_number(tmp_path):
    make_koniq(tmp_path)
    edit_csv(tmp_path / "koniq10k" / "koniq10k_distributions_sets.csv", lambda f: f.loc.__setitem__((0, "MOS"), "n/a"))
    with raises_one_line(DatasetError, names=(tmp_path / "koniq10k" / "koniq10k_distributions_sets.csv", "line 2",
                                              "'MOS'", "'n/a'")):
        load(tmp_path, "koniq")


def test_duplicate_names(tmp_path):
    frame = make_agiqa(tmp_path)
    edit_csv(tmp_path / "agiqa3k" / "split_agiqa3k.csv",
             lambda f: f.loc.__setitem__((5, "name"), frame["name"][1]))
    with raises_one_line(DatasetError, names=(tmp_path / "agiqa3k" / "split_agiqa3k.csv", "line 7", "'name'",
                                              repr(frame["name"][1]), "line 3")):
        load(tmp_path, "agiqa")


def test_bad_split_value(tmp_path):
    make_kadid(tmp_path)
    edit_csv(tmp_path / "kadid10k" / "split_kadid10k.csv", lambda f: f.loc.__setitem__((0, "split"), "holdout"))
    with raises_one_line(DatasetError, names=(tmp_path / "kadid10k" / "split_kadid10k.csv", "line 2", "'split'", "'holdout'", "train")):
        load(tmp_path)


def test_unreadable_csv(tmp_path):
    make_kadid(tmp_path)
    (tmp_path / "kadid10k" / "split_kadid10k.csv").write_bytes(b"\xff\xfe\x00garbage\x00\xff")
    with raises_one_line(DatasetError, names=(tmp_path / "kadid10k" / "split_kadid10k.csv",)):
        load(tmp_path)


def test_all_errors_lists_every_problem(tmp_path):
    frame = make_kadid(tmp_path)
    for name in frame["dist_img"][:3]:
        (tmp_path / "kadid10k" / "images" / name).unlink()
    with pytest.raises(DatasetError) as first_only:
        load(tmp_path)
    assert len(first_only.value.problems) == 3
    assert "... and 2 more problem(s)" in str(first_only.value)
    with pytest.raises(DatasetError) as everything:
        load(tmp_path, all_errors=True)
    assert all(f"line {line}" in str(everything.value) for line in (2, 3, 4))


def test_check_reports_layout_folders_counts_and_content_leak(tmp_path):
    make_kadid(tmp_path, "paper")
    make_koniq(tmp_path, "paper", folders=("512x384",))
    lines: list[str] = []
    status = check_datasets(tmp_path, progress=False, count_check="off", out=lines.append)
    text = "\n".join(lines)
    assert status == 0
    assert "KADID-10k: OK" in text and "KonIQ-10k: OK" in text and "AGIQA-3K: not found" in text
    assert f"images:  {tmp_path / 'koniq10k' / '512x384'}" in text
    assert "counts:  train 18 | val 6 | test 6 | total 30" in text
    assert "3 of the 3 content groups in test also appear in train" in text


def test_check_finds_unreadable_images_and_lists_all_with_all_errors(tmp_path):
    frame = make_kadid(tmp_path)
    for name in frame["dist_img"][[1, 3]]:
        (tmp_path / "kadid10k" / "images" / name).write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    lines: list[str] = []
    assert check_datasets(tmp_path, ["kadid"], count_check="off", progress=False, out=lines.append) == 1
    assert sum("ERROR" in line for line in lines) == 1 and any("1 more problem" in line for line in lines)
    lines.clear()
    check_datasets(tmp_path, ["kadid"], count_check="off", all_errors=True, progress=False, out=lines.append)
    errors = [line for line in lines if "ERROR" in line]
    assert len(errors) == 2 and "line 3" in errors[0] and "cannot be read" in errors[0]
    lines.clear()
    assert check_datasets(tmp_path, ["kadid"], count_check="off", decode_images=False, progress=False,
                          out=lines.append) == 0


def test_check_of_an_empty_root_fails(tmp_path):
    lines: list[str] = []
    assert check_datasets(tmp_path, progress=False, out=lines.append) == 1
    assert "no dataset found" in lines[-1]


def test_check_warns_about_counts_but_passes(tmp_path):
    make_agiqa(tmp_path)
    lines: list[str] = []
    assert check_datasets(tmp_path, ["agiqa"], progress=False, out=lines.append) == 0
    assert any("WARNING" in line and "AGIQA-3K has 2982 images" in line for line in lines)


def test_register_adds_data_check_and_synth(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="vpkit")
    register(parser.add_subparsers(dest="command"))
    make_kadid(tmp_path)
    args = parser.parse_args(["data", "check", str(tmp_path), "--dataset", "kadid", "--counts", "off", "--quiet"])
    assert args.handler(args) == 0
    assert "KADID-10k: OK" in capsys.readouterr().out
    synth = parser.parse_args(["data", "synth", str(tmp_path / "out"), "--small"])
    assert callable(synth.handler) and synth.small


def test_synth_help_states_the_real_defaults(capsys):
    """The help is written without importing the generator (slow); it must not drift from its constants."""
    from vpkit.data.synth import DEFAULT_N_REFS, DEMO_DISTORTIONS, SMALL_N_REFS

    parser = argparse.ArgumentParser(prog="vpkit")
    register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "synth", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {DEFAULT_N_REFS})" in text and f"{SMALL_N_REFS} references" in text
    assert f"the {len(DEMO_DISTORTIONS)} types the tiny model never saw" in text


def test_cli_exit_codes(tmp_path, capsys):
    make_kadid(tmp_path)
    (tmp_path / "kadid10k" / "images" / "I01_01_01.png").unlink()
    assert main(["data", "check", str(tmp_path), "--dataset", "kadid", "--all-errors", "--quiet"]) == 1
    assert "ERROR" in capsys.readouterr().out
    assert main(["data", "synth", str(tmp_path), "--distortions", "not_a_type", "--quiet"]) == 2
    assert "unknown distortion" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    make_kadid(tmp_path)
    done = subprocess.run([sys.executable, "-m", "vpkit.data.cli", "data", "check", str(tmp_path), "--counts", "off",
                           "--quiet"], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "KADID-10k: OK" in done.stdout


def test_check_reports_a_generated_split_too_small_to_correlate(tmp_path):
    make_kadid(tmp_path, "original", n_refs=1)  # 10 images: the generated 80/10/10 split has 1 val, 1 test image
    lines: list[str] = []
    assert check_datasets(tmp_path, ["kadid"], count_check="off", all_errors=True, progress=False,
                          out=lines.append) == 1
    errors = [line for line in lines if "ERROR" in line]
    assert len(errors) == 2
    assert "the val split has 1 image(s) but a run needs at least 3" in errors[0]
    assert "the test split has 1 image(s)" in errors[1] and "generated random split" in errors[1]
