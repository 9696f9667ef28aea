"""Run folders: atomic files, prompt checkpoints, overwrite/resume rules, reading back, importing prompts."""

import importlib
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from _messages import raises_one_line

from vpkit import provenance
from vpkit.atomic import atomic_replace, write_json_atomic
from vpkit.config import paper_config
from vpkit.evaluate import load_trained_prompt
from vpkit.paper import import_prompt
from vpkit.prompters import PromptStateError, build_prompter
from vpkit.runs import (
    SPLITS,
    RunFolderError,
    RunState,
    check_same_data,
    collect_runs,
    images_fingerprint,
    load_prompt_checkpoint,
    lock_run_dir,
    prepare_run_dir,
    read_run,
    run_status,
    save_prompt_checkpoint,
    write_config,
    write_data_record,
    write_metrics,
    write_state,
)


def small_config(number=4, image_size=64):
    config = paper_config(number).with_overrides({"model": {"name_or_path": "tiny-random"}})
    config.prompt.image_size = image_size
    config.prompt.size = 4 if config.prompt.size else None
    return config


def fake_run(run_dir, config, epochs=2, finished=True, test_srcc=0.5):
    """A run folder written through the runs API, as the training loop writes it."""
    prepare_run_dir(run_dir, resume=False, overwrite=False)
    provenance.write_record(run_dir, "training", [])
    write_config(run_dir, config)
    rows = [
        {"epoch": e, "train_loss": 0.1 / e, "val_srcc": 0.1 * e, "val_plcc": 0.2 * e}
        for e in range(1, epochs + 1)
    ]
    write_metrics(run_dir, rows)
    write_state(
        run_dir, RunState(config_hash=config.hash(), epoch=epochs, best_epoch=epochs, finished=finished)
    )
    if finished:
        write_json_atomic(run_dir / "test.json", {"srcc": test_srcc, "plcc": 0.6, "dataset": "kadid"})


def test_prompt_checkpoint_round_trip_keeps_paper_keys_and_metadata(tmp_path):
    prompter = build_prompter("padding", size=4, image_size=32)
    path = tmp_path / "epoch-01.safetensors"
    save_prompt_checkpoint(
        path, prompter.state_dict(), {"epoch": 1, "metrics": {"val_srcc": 0.5}, "name": "x"}
    )
    state, metadata = load_prompt_checkpoint(path)
    assert set(state) == {"pad_up", "pad_down", "pad_left", "pad_right"}
    assert torch.equal(state["pad_up"], prompter.pad_up.detach())
    assert metadata == {"epoch": 1, "metrics": {"val_srcc": 0.5}, "name": "x"}
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-01.safetensors"]  # no temp file left behind


def test_a_failed_atomic_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "state.json"
    write_json_atomic(path, {"epoch": 1})

    def broken(tmp):
        Path(tmp).write_text("{half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_replace(path, broken)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_existing_runs_are_never_overwritten_without_a_flag(tmp_path):
    run_dir = tmp_path / "run"
    assert prepare_run_dir(run_dir, resume=False, overwrite=False) == "new"
    fake_run(run_dir, small_config(), finished=False)
    assert run_status(run_dir) == "partial"
    with raises_one_line(RunFolderError, names=(run_dir, "epoch 2", "--resume"), fix="--overwrite"):
        prepare_run_dir(run_dir, resume=False, overwrite=False)
    assert prepare_run_dir(run_dir, resume=True, overwrite=False) == "resume"

    write_state(run_dir, RunState(config_hash="x", epoch=2, best_epoch=2, finished=True))
    assert prepare_run_dir(run_dir, resume=False, overwrite=False) == "finished"

    (run_dir / "notes.txt").write_text("mine")
    assert prepare_run_dir(run_dir, resume=False, overwrite=True) == "new"
    assert sorted(p.name for p in run_dir.iterdir()) == ["notes.txt"]  # only vpkit's own files removed


def test_read_run_and_collect_runs_make_one_row_per_run(tmp_path):
    fake_run(tmp_path / "a", small_config(4), test_srcc=0.7)
    fake_run(tmp_path / "b", small_config(1), epochs=3, finished=False)
    record = read_run(tmp_path / "a")
    assert (
        record.status == "finished" and list(record.metrics["epoch"]) == [1, 2] and record.test["srcc"] == 0.7
    )
    table = collect_runs(tmp_path)
    assert list(table["number"]) == [1, 4]
    assert list(table["status"]) == ["partial", "finished"]
    assert table.loc[1, "test_srcc"] == 0.7 and table.loc[1, "val_srcc"] == pytest.approx(0.2)
    assert table.loc[0, "epochs_done"] == 3 and table.loc[0, "best_epoch"] == 3
    assert (tmp_path / "a" / "metrics.csv").read_text().splitlines()[
        0
    ] == "epoch,train_loss,val_srcc,val_plcc"


def test_import_prompt_makes_a_run_folder_that_loads_back(tmp_path):
    paper_prompt = build_prompter("fixed_patch", size=4, is_center=True, mode="mul", image_size=64)
    with torch.no_grad():
        paper_prompt.patch.normal_()
    pth = tmp_path / "visual_prompt.pth"
    torch.save(paper_prompt.state_dict(), pth)
    config = small_config(25)  # kadid, centre patch, mul
    out = import_prompt(pth, tmp_path / "imported", config)
    assert run_status(out) == "finished"
    trained = load_trained_prompt(out)
    assert trained.prompter.spec() == paper_prompt.spec()
    assert torch.equal(trained.prompter.patch, paper_prompt.patch)
    assert trained.config == config and trained.metadata["imported_from"] == str(pth.resolve())
    record = provenance.read_record(out)
    assert (record["format_version"], record["kind"]) == (provenance.FORMAT_VERSION, "import")
    [session] = record["sessions"]
    assert session["outcome"] == "finished" and session["data"]["imported"] == [str(pth.resolve())]
    assert session["model"] == {"kind": "preset", "name": "tiny-random", "fingerprint": None}
    with raises_one_line(RunFolderError, names=(out,), fix="--overwrite"):
        import_prompt(pth, out, config)


def test_import_prompt_with_the_wrong_shape_says_what_the_checkpoint_holds(tmp_path):
    pth = tmp_path / "visual_prompt.pth"
    torch.save(build_prompter("padding", size=6, image_size=64).state_dict(), pth)
    with raises_one_line(PromptStateError, names=(pth, "size=6", "image_size=64")):
        import_prompt(pth, tmp_path / "imported", small_config(4))  # padding 4 px


def test_the_lock_nests_in_one_process_and_a_folder_it_made_goes_if_left_empty(tmp_path):
    run_dir = tmp_path / "new" / "run"
    with lock_run_dir(run_dir):
        owner = json.loads((run_dir / ".vpkit-owner.json").read_text())
        assert owner["pid"] == os.getpid() and run_status(run_dir) == "new"  # hidden files are not a run
        with lock_run_dir(run_dir):  # e.g. reproduce checks a run, then train() trains it
            pass
        assert (run_dir / ".vpkit-owner.json").is_file()  # still owned after the inner block
    assert not (tmp_path / "new").exists()  # made here, nothing written: removed
    with lock_run_dir(run_dir):
        (run_dir / "config.yaml").write_text("name: x\n")
    assert sorted(p.name for p in run_dir.iterdir()) == [".vpkit.lock", "config.yaml"]


def test_other_data_without_the_image_list_still_names_the_splits_that_differ(tmp_path):
    images = pd.DataFrame({"name": ["a", "b", "c", "d"], "split": ["train", "train", "val", "test"],
                           "label": [0.1, 0.2, 0.3, 0.4]})
    record = {"root": "/data", "layout": "paper", "fingerprint": images_fingerprint(images),
              "images": {"train": 2, "val": 1, "test": 1},
              "split_fingerprints": {s: images_fingerprint(images[images["split"] == s]) for s in SPLITS}}
    write_data_record(tmp_path, record, images)
    changed = images.assign(label=[0.1, 0.2, 0.3, 0.5])
    new = {**record, "fingerprint": images_fingerprint(changed),
           "split_fingerprints": {s: images_fingerprint(changed[changed["split"] == s]) for s in SPLITS}}
    with raises_one_line(RunFolderError, names=(tmp_path, "test: 1 label(s)", "'d' 0.4 -> 0.5")):
        check_same_data(tmp_path, new, changed)
    (tmp_path / "data-images.csv").unlink()  # a folder copied without it
    with raises_one_line(RunFolderError, names=(tmp_path, "test: 1 -> 1 images")):
        check_same_data(tmp_path, new, changed)
    assert check_same_data(tmp_path, {**record, "root": "/moved"}, images).startswith(f"{tmp_path} was trained on")


def test_the_run_folder_names_resolve_from_their_modules_and_load_only_those():
    import subprocess
    import sys

    import vpkit.runs

    exported = {name: module for module, names in vpkit.runs._EXPORTS.items() for name in names}
    assert sorted(vpkit.runs.__all__) == sorted(exported)
    for name, module in exported.items():
        assert getattr(vpkit.runs, name) is vars(importlib.import_module(f"vpkit.runs.{module}"))[name], name
    with pytest.raises(AttributeError, match="'vpkit.runs' has no attribute 'json_or_error'"):
        vpkit.runs.json_or_error  # noqa: B018  (a helper of the package, not exported)
    script = ("import sys; from vpkit.runs import lock_run_dir; "
              "print(sorted(m for m in sys.modules if m.startswith('vpkit.runs.')))")
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "['vpkit.runs.files', 'vpkit.runs.lock']"
