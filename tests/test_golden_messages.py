"""Golden messages: a few of vpkit's error lines pinned word for word.

Everywhere else the tests check a message by what it names and whether it offers a fix (tests/_messages.py), so
that rewording one does not break a test. These ten are pinned whole because they are the ones a user meets first
and most often (docs/cli.md quotes the run folder one and describes the --traceback one):
 1-4. the command line's own mistakes: an experiment number that does not exist, a bad --option value, `vpkit eval`
      without a run, `vpkit import-prompt` without saying what the prompt is;
 5.   a bad value in a config file (file, field, value, the choices);
 6-7. a dataset that is not where it is looked for, and a bad row in a score file (file, line, column, the fix);
 8.   a run folder that holds a run of other settings (the message behind every rerun with changed options);
 9.   an OS error as the command line turns it into one line (the path and the fix, not the temporary file);
 10.  an unexpected error, which points to --traceback.
Changing one of these sentences is a decision about the interface: update the docs with it.
"""
import errno

import pandas as pd
import pytest
from _messages import assert_one_line_error
from test_data_layouts import make_kadid
from test_runs import fake_run, small_config

from vpkit.cli import error_line, main
from vpkit.config import ConfigError, load_config, paper_config
from vpkit.data import DatasetError, load_table
from vpkit.runs import other_settings_message, read_config


@pytest.mark.parametrize("args, line", [
    (["train", "99"], "vpkit train: error: experiment number 99 does not exist; the paper has 1..33"),
    (["train", "4", "--epochs", "0"], "vpkit train: error: command line: train.epochs = 0 must be >= 1"),
    (["eval", "--dataset", "kadid"], "vpkit eval: error: give a run folder or checkpoint, or --zero-shot (not both)"),
    (["import-prompt", "missing.pth", "--out", "x"],
     ("vpkit import-prompt: error: say what the prompt is: --experiment N, or --type (and --size, --mode); the path "
      "names no paper experiment folder (SGD_mplug2_exp_NN_...)")),
])
def test_the_command_lines_own_mistakes(args, line, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err == line + "\n"


def test_a_bad_value_in_a_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(paper_config(4).to_yaml().replace("  checkpointing: 'off'\n", "  checkpointing: true\n"))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (f"{path}: train.checkpointing = true is not allowed; choose one of: off, full, "
                                  "selective, mixed")


def test_a_missing_dataset_and_a_bad_score_row(tmp_path):
    with pytest.raises(DatasetError) as refused:
        load_table("kadid", tmp_path / "nowhere")
    assert str(refused.value) == (f"{tmp_path / 'nowhere'}: data root folder does not exist. Fix: pass the folder "
                                  "that holds the dataset folders (e.g. the one with kadid10k/ in it)")
    make_kadid(tmp_path)
    csv = tmp_path / "kadid10k" / "split_kadid10k.csv"
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    frame.loc[2, "dmos"] = "7.5"
    frame.to_csv(csv, index=False)
    with pytest.raises(DatasetError) as refused:
        load_table("kadid", tmp_path)
    assert str(refused.value) == (f"{csv}, line 4, column 'dmos': score 7.5 is outside [1, 5]. Fix: check the row; "
                                  "dmos in this file is on the 1-5 scale")


def test_a_run_folder_of_other_settings(tmp_path):
    run_dir = tmp_path / "run"
    fake_run(run_dir, small_config(), finished=False)
    asked = small_config().with_overrides({"train": {"lr": 30.0}})
    assert other_settings_message(run_dir, read_config(run_dir), asked) == (
        f"{run_dir}: holds a run of other settings (train.lr: 60.0 -> 30.0); use the same settings, another --out, "
        "or --overwrite to start again")


def test_an_os_error_and_an_unexpected_error():
    temporary = "/runs/x/.best.safetensors.k2j4.tmp"  # as vpkit.atomic names the file it writes first
    assert error_line(OSError(errno.ENOSPC, "No space left on device", temporary)) == (
        "/runs/x: No space left on device; free some disk space or write somewhere else, then run the command again")
    assert error_line(KeyError("type")) == "KeyError: 'type' (unexpected here; rerun with --traceback to see where)"


def test_the_message_check_fails_on_two_lines_a_missing_name_or_no_fix():
    """tests/_messages.py, which checks every other message: it must be able to fail."""
    line = "c.yaml: train.lr = 0.0 must be > 0"
    assert assert_one_line_error(ValueError(line), names=("c.yaml", "train.lr")) == line
    for text, names, fix in ((line + "\nTraceback ...", (), None),  # two lines
                             (line, ("other.yaml",), None),  # another file
                             ("c.yaml: train.lr is wrong because it is zero", (), None),  # no fix ("because")
                             (line, (), "--overwrite")):  # not the fix asked for
        with pytest.raises(AssertionError):
            assert_one_line_error(text, names, fix)
