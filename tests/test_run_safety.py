"""A run folder is safe: one owner at a time, tied to its data and its own checkpoints, checked before the first
step, byte-identical between identical runs, and a failed start leaves nothing behind. Tiny model, 4 images."""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from _messages import raises_one_line

from vpkit import provenance
from vpkit.config import paper_config
from vpkit.data import DatasetError
from vpkit.evaluate import load_trained_prompt
from vpkit.models import load_scorer
from vpkit.preflight import PreflightError
from vpkit.prompters import build_prompter
from vpkit.runs import (
    RunFolderBusy,
    RunFolderError,
    RunFormatError,
    collect_runs,
    prompt_checkpoint_metadata,
    read_run,
    run_status,
    save_prompt_checkpoint,
)
from vpkit.train import train


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("tiny-random")


def quick_config(data_root, **train_settings):
    settings = {"epochs": 2, "batch_size": 4, "limit": 4, "num_workers": 0, **train_settings}
    return paper_config(4).with_overrides(
        {"model": {"name_or_path": "tiny-random"}, "dataset": {"root": str(data_root)}, "train": settings}
    )


def stop_after_epoch(epoch):
    def callback(row):
        if row["epoch"] == epoch:
            raise KeyboardInterrupt(f"stopped after epoch {epoch}")

    return callback


def partial_run(data_root, run_dir, scorer, **settings):
    """A run stopped after its first epoch (state 'partial'), as a kill leaves it."""
    with pytest.raises(KeyboardInterrupt):
        train(quick_config(data_root, **settings), run_dir, scorer=scorer, callbacks=[stop_after_epoch(1)],
              progress=False)
    assert run_status(run_dir) == "partial"
    return run_dir


def copy_data(data_root, target):
    shutil.copytree(data_root, target)
    return target


def edit_scores(root, change):
    """Rewrite the scores file of the dataset under `root` as `change(frame)` returns it."""
    path = root / "kadid10k" / "split_kadid10k.csv"
    change(pd.read_csv(path)).to_csv(path, index=False)


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- 1. one owner at a time

HOLD_LOCK = """
import sys, time
from vpkit.runs import lock_run_dir
with lock_run_dir(sys.argv[1]):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_second_process_is_refused_at_once_naming_the_owner_and_the_lock_dies_with_it(data_root, scorer,
                                                                                        tmp_path, monkeypatch):
    import vpkit.train

    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with monkeypatch.context() as patch:  # refused at once: before the data is read (or any epoch runs)
            patch.setattr(vpkit.train, "_load_table", lambda config: pytest.fail("read the data of a busy run"))
            with raises_one_line(RunFolderBusy, names=(run_dir, f"pid {holder.pid}")):
                train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
        assert run_status(run_dir) == "partial" and read_run(run_dir).state.epoch == 1
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder; the OS releases its lock
        holder.wait()
    test = train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    assert run_status(run_dir) == "finished" and test["epochs_run"] == 2
    assert not (run_dir / ".vpkit-owner.json").exists()


# ----------------------------------------------------------------------------- 2. the data a run trained on


def test_resume_and_rerun_on_other_data_are_refused_listing_the_difference(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    record = read_run(run_dir)
    assert (run_dir / "data.json").is_file() and (run_dir / "data-images.csv").is_file()
    other = copy_data(data_root, tmp_path / "other")
    edit_scores(other, lambda f: f.assign(dmos=(f["dmos"] * 0.9).round(3)))  # every label changes
    with raises_one_line(RunFolderError, names=(run_dir, other, "train: 4 label(s)", "val: 4 label(s)",
                                                "test: 4 label(s)")):
        train(quick_config(other), run_dir, resume=True, scorer=scorer, progress=False)
    assert read_run(run_dir).state == record.state  # nothing touched

    fewer = copy_data(data_root, tmp_path / "fewer")
    edit_scores(fewer, lambda f: f.drop(index=f.query("split == 'test'").index[:3]))  # so another test sample
    with raises_one_line(RunFolderError, names=(run_dir, fewer, "test: ", "gained", "lost")):  # the split, both ways
        train(quick_config(fewer), run_dir, resume=True, scorer=scorer, progress=False)

    train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    with raises_one_line(RunFolderError, names=(run_dir, other, "test: 4 label(s)")):
        train(quick_config(other), run_dir, scorer=scorer, progress=False)  # a finished run is not reported


def test_a_moved_but_identical_dataset_is_accepted_with_a_note(data_root, scorer, tmp_path, capsys):
    original = copy_data(data_root, tmp_path / "original")
    run_dir = partial_run(original, tmp_path / "run", scorer)
    moved = tmp_path / "moved"
    original.rename(moved)
    test = train(quick_config(moved), run_dir, resume=True, scorer=scorer, progress=False)
    assert test["epochs_run"] == 2
    assert f"was trained on the data at {original.resolve()}; the data at {moved.resolve()} has the same" in (
        capsys.readouterr().out
    )


def other_pixels(root, names):
    """Change one pixel of each image file `names` under `root` (a copy whose names, splits and labels stay)."""
    import numpy as np
    from PIL import Image

    for name in names:
        path = root / "kadid10k" / "images" / name
        pixels = np.asarray(Image.open(path)).copy()
        pixels[0, 0] ^= 1
        Image.fromarray(pixels).save(path)


def test_resume_and_rerun_on_other_pixels_are_refused_naming_the_files(data_root, scorer, tmp_path, capsys):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    recorded = pd.read_csv(run_dir / "data-images.csv")
    assert recorded["file_digest"].str.fullmatch(r"[0-9a-f]{32}").all()  # one fingerprint per image file
    train_names = sorted(recorded.query("split == 'train'")["name"])
    edited = copy_data(data_root, tmp_path / "edited")
    other_pixels(edited, train_names[:2])
    names = (run_dir, f"2 of its {len(recorded)} image files", repr(train_names[0]), repr(train_names[1]))
    with raises_one_line(RunFolderError, names=names):  # before: "has the same images ..., so it is used"
        train(quick_config(edited), run_dir, resume=True, scorer=scorer, progress=False)
    assert run_status(run_dir) == "partial" and read_run(run_dir).state.epoch == 1  # nothing touched
    train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    with raises_one_line(RunFolderError, names=names):  # a finished run is not reported as a result on it
        train(quick_config(edited), run_dir, scorer=scorer, progress=False)
    moved = copy_data(data_root, tmp_path / "moved")  # identical bytes elsewhere: used, with a note
    capsys.readouterr()
    train(quick_config(moved), run_dir, scorer=scorer, progress=False)
    assert "has the same image files, splits and labels, so it is used" in capsys.readouterr().out


def test_a_run_recorded_before_file_fingerprints_says_what_it_cannot_check(data_root, scorer, tmp_path, capsys):
    import json

    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    record = json.loads((run_dir / "data.json").read_text())  # as a vpkit before fingerprints wrote them
    for key in ("file_digest", "files_fingerprint"):
        del record[key]
    (run_dir / "data.json").write_text(json.dumps(record))
    images = pd.read_csv(run_dir / "data-images.csv")
    images.drop(columns="file_digest").to_csv(run_dir / "data-images.csv", index=False)
    capsys.readouterr()
    train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    out = capsys.readouterr().out
    assert "names, splits and labels are the ones it trained on (the run was recorded by a vpkit that did not " \
           "fingerprint image files this way, so their contents cannot be compared; --overwrite trains it again" in out
    assert "file_digest" not in pd.read_csv(run_dir / "data-images.csv")  # today's bytes are not vouched for


# ----------------------------------------------------------------------------- 3. the settings a run trained with


def test_resuming_with_other_settings_is_refused_naming_them(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    with raises_one_line(RunFolderError, names=(run_dir, "train.lr: 60.0 -> 30.0", "--out"), fix="--overwrite"):
        train(quick_config(data_root, lr=30.0), run_dir, resume=True, scorer=scorer, progress=False)
    assert run_status(run_dir) == "partial"


def test_the_run_folder_records_what_made_each_session_of_it(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    stopped = provenance.read_record(run_dir)
    assert (stopped["format_version"], stopped["kind"]) == (provenance.FORMAT_VERSION, "training")
    [first] = stopped["sessions"]
    assert first["outcome"] == "stopped" and first["ended"] >= first["started"]
    assert (first["device"], first["device_name"], first["processes"]) == ("cpu", None, 1)
    assert first["model"] == {"kind": "preset", "name": "tiny-random", "fingerprint": None}
    assert first["data"] == {"dataset": "kadid", "root": str(data_root.resolve()), "archives": None}
    assert first["environment"] == json.loads(json.dumps(provenance.environment_facts()))
    train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    sessions = provenance.read_record(run_dir)["sessions"]
    assert sessions[0] == first and sessions[1]["outcome"] == "finished" and len(sessions) == 2
    train(quick_config(data_root), run_dir, overwrite=True, scorer=scorer, progress=False)
    assert len(provenance.read_record(run_dir)["sessions"]) == 1  # a run trained again is a new record


@pytest.mark.parametrize("change, said", [  # what the line names besides the folder: the formats, which vpkit
    (lambda path: path.unlink(), ("provenance.json", "earlier", "format 1")),
    (lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 0})),
     ("format 0", "earlier")),
    (lambda path: path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 2})),
     ("format 2", "newer", "format 1")),
])
def test_a_run_folder_of_another_format_is_refused_in_one_line(data_root, scorer, tmp_path, change, said):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    change(run_dir / "provenance.json")
    for resume in (True, False):  # continuing it, or being told how
        with raises_one_line(RunFormatError, names=(run_dir, *said), fix="--overwrite"):
            train(quick_config(data_root), run_dir, resume=resume, scorer=scorer, progress=False)
    with raises_one_line(RunFormatError, names=(run_dir, *said), fix="--overwrite") as refused:  # vpkit eval / score
        load_trained_prompt(run_dir)
    [row] = collect_runs(tmp_path).to_dict("records")  # vpkit runs
    assert row["status"] == "other format" and str(refused.value).endswith(row["problem"])
    assert run_status(run_dir) == "partial"  # nothing touched
    train(quick_config(data_root), run_dir, overwrite=True, scorer=scorer, progress=False)
    assert run_status(run_dir) == "finished"


def test_a_config_yaml_edited_by_hand_is_named_as_such(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    config_file = run_dir / "config.yaml"
    config_file.write_text(config_file.read_text().replace("lr: 60.0", "lr: 30.0"))
    edited = (run_dir, "config.yaml", "edited by hand")
    with raises_one_line(RunFolderError, names=edited, fix="--overwrite"):  # before: "other settings (none visible"
        train(quick_config(data_root, lr=30.0), run_dir, resume=True, scorer=scorer, progress=False)
    with raises_one_line(RunFolderError, names=(*edited, "train.lr: 30.0 -> 60.0"), fix="--overwrite"):
        train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    config_file.write_text(config_file.read_text().replace("lr: 30.0", "lr: 60.0"))  # the edit undone
    train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    config_file.write_text(config_file.read_text().replace("lr: 60.0", "lr: 30.0"))
    with raises_one_line(RunFolderError, names=edited, fix="--overwrite"):  # before: reported as finished at lr 30
        train(quick_config(data_root, lr=30.0), run_dir, scorer=scorer, progress=False)


def test_settings_that_only_say_where_a_run_executes_are_not_named_as_differences():
    from vpkit.runs import config_differences

    old = paper_config(4)
    new = old.with_overrides({"train": {"lr": 30.0, "num_workers": 3, "device": "cpu"}, "dataset": {"root": "x"}})
    assert config_differences(old, new) == ["train.lr: 60.0 -> 30.0"]


# ----------------------------------------------------------------------------- 4. a run's own checkpoints


def foreign_checkpoint(path):
    """A padding prompt of the same size and shapes, but in mode 'mul': loads into the run's prompter silently."""
    config = paper_config(4).with_overrides({"prompt": {"mode": "mul"}})
    prompter = build_prompter("padding", size=15, mode="mul", image_size=224)
    save_prompt_checkpoint(path, prompter.state_dict(), prompt_checkpoint_metadata(config, prompter, 1, {}))


def test_a_checkpoint_of_another_prompt_is_refused_wherever_it_is_loaded(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    foreign_checkpoint(run_dir / "epoch-01.safetensors")
    names = (run_dir / "epoch-01.safetensors", "prompt mode", "'mul'", "'add'")
    with raises_one_line(RunFolderError, names=names):
        train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)  # resume
    with raises_one_line(RunFolderError, names=names):
        load_trained_prompt(run_dir / "epoch-01.safetensors")  # eval, score and the gallery load through this

    def swap_best(row):  # a file copied in while the run trains: found when the test split is scored
        if row["epoch"] == 2:
            foreign_checkpoint(tmp_path / "other" / "run" / "best.safetensors")

    best = (tmp_path / "other" / "run" / "best.safetensors", "'mul'")
    with raises_one_line(RunFolderError, names=best):
        train(quick_config(data_root), tmp_path / "other" / "run", scorer=scorer, callbacks=[swap_best],
              progress=False)
    with raises_one_line(RunFolderError, names=best):
        load_trained_prompt(tmp_path / "other" / "run")


def test_a_checkpoint_of_another_run_with_the_same_prompt_is_refused(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    other = partial_run(data_root, tmp_path / "other", scorer, lr=30.0)
    shutil.copyfile(other / "epoch-01.safetensors", run_dir / "epoch-01.safetensors")
    with raises_one_line(RunFolderError, names=(run_dir / "epoch-01.safetensors", "config hash")):
        train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)


# ----------------------------------------------------------------------------- 5, 17. checked before the first step


def test_a_corrupt_test_image_is_refused_before_any_epoch_naming_the_file(data_root, scorer, tmp_path):
    data = copy_data(data_root, tmp_path / "data")
    frame = pd.read_csv(data / "kadid10k" / "split_kadid10k.csv")
    bad = data / "kadid10k" / "images" / frame.query("split == 'test'")["dist_img"].iloc[0]
    bad.write_bytes(bad.read_bytes()[:200])  # truncated, as a killed download leaves it
    run_dir = tmp_path / "run"
    with raises_one_line(PreflightError, names=(bad, "1 of the run's")):
        train(quick_config(data, limit=None), run_dir, scorer=scorer, progress=False)
    assert not run_dir.exists()  # no epoch trained, and no folder left to --overwrite


def test_images_the_loader_would_refuse_are_refused_before_any_epoch(tmp_path):
    """Floating-point pixels decode, but no loader worker can turn them into 8 bits: refused up front."""
    import numpy as np
    from PIL import Image

    from vpkit.preflight import check_images

    good, floats = tmp_path / "good.png", tmp_path / "floats.tif"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good)
    Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)).save(floats)
    check_images([str(good)], progress=False)
    with raises_one_line(PreflightError, names=(floats, "1 of the run's 2", "mode F", "8- or 16-bit")):
        check_images([str(good), str(floats)], progress=False)


def test_an_image_over_pillows_limit_is_too_large_not_damaged_before_any_epoch(tmp_path, monkeypatch):
    import warnings

    import numpy as np
    from PIL import Image

    from vpkit.preflight import check_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # warns above 30 pixels, refuses above 60
    large, huge = tmp_path / "large.png", tmp_path / "huge.png"
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(large)  # 48 pixels: read
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(huge)  # 64 pixels: refused
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_images([str(large)], progress=False)
    assert not caught  # Pillow's raw DecompressionBombWarning is not shown
    with raises_one_line(PreflightError, names=(huge, "64 pixels", "60"), fix="VPKIT_MAX_IMAGE_PIXELS=64"):
        check_images([str(huge)], progress=False)


def test_an_empty_test_split_and_a_two_image_val_split_are_refused_before_any_epoch(data_root, scorer, tmp_path):
    no_test = copy_data(data_root, tmp_path / "no_test")
    edit_scores(no_test, lambda f: f.assign(split=f["split"].replace("test", "val")))
    run_dir = tmp_path / "run"
    with raises_one_line(PreflightError, names=("test split", "0 image(s)", "3")):
        train(quick_config(no_test), run_dir, scorer=scorer, progress=False)
    assert not run_dir.exists()

    small_val = copy_data(data_root, tmp_path / "small_val")
    edit_scores(small_val, lambda f: f.assign(split=f["split"].mask(f.index.isin(f.query("split == 'val'").index[2:]),
                                                                    "train")))
    with raises_one_line(PreflightError, names=("val split", "2 image(s)", "3")):
        train(quick_config(small_val), run_dir, scorer=scorer, progress=False)  # before: failed after every epoch
    assert not run_dir.exists()


def test_constant_test_scores_record_an_undefined_result_instead_of_failing(data_root, scorer, tmp_path):
    data = copy_data(data_root, tmp_path / "data")
    frame = pd.read_csv(data / "kadid10k" / "split_kadid10k.csv")
    images = data / "kadid10k" / "images"
    test_names = frame.query("split == 'test'")["dist_img"].tolist()
    for name in test_names[1:]:  # every test image the same picture, with its own MOS: equal scores
        shutil.copyfile(images / test_names[0], images / name)
    run_dir = tmp_path / "run"
    test = train(quick_config(data), run_dir, scorer=scorer, progress=False)
    assert test["srcc"] is None and test["plcc"] is None and "constant" in test["undefined_reason"]
    assert run_status(run_dir) == "finished" and read_run(run_dir).test == test
    table = collect_runs(tmp_path)
    assert table.loc[0, "status"] == "finished" and pd.isna(table.loc[0, "test_srcc"])
    assert "constant" in table.loc[0, "test_undefined_reason"]
    assert train(quick_config(data), run_dir, scorer=scorer, progress=False) == test  # reported, not retrained


# ----------------------------------------------------------------------------- 10. identical runs, identical files


def test_identical_runs_write_byte_identical_checkpoints(data_root, scorer, tmp_path):
    for name in ("a", "b"):
        train(quick_config(data_root, epochs=1), tmp_path / name, scorer=scorer, progress=False)
    for checkpoint in ("epoch-01.safetensors", "best.safetensors"):
        assert sha256(tmp_path / "a" / checkpoint) == sha256(tmp_path / "b" / checkpoint), checkpoint


# ----------------------------------------------------------------------------- 11. killed writes' temporary files


def leftover(run_dir, name):
    handle, path = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=run_dir)  # as vpkit.atomic names it
    with open(handle, "wb") as file:
        file.write(b"half a file")
    return path


def test_resume_and_overwrite_remove_the_temporary_files_of_killed_writes(data_root, scorer, tmp_path):
    run_dir = partial_run(data_root, tmp_path / "run", scorer)
    (run_dir / ".my-notes.tmp").write_text("not vpkit's")
    for flag in ("resume", "overwrite"):
        names = ("epoch-02.safetensors", "state.json", "trainer-state-02.pt", "best.safetensors")
        temporaries = [leftover(run_dir, name) for name in names]
        train(quick_config(data_root), run_dir, scorer=scorer, progress=False, **{flag: True})
        assert run_status(run_dir) == "finished"
        assert not [path for path in temporaries if Path(path).exists()], flag
    assert (run_dir / ".my-notes.tmp").read_text() == "not vpkit's"


# ----------------------------------------------------------------------------- 12. a failed start leaves nothing


def test_a_failed_start_leaves_no_folder_and_the_fixed_command_needs_no_overwrite(data_root, scorer, tmp_path):
    run_dir = tmp_path / "runs" / "exp04"
    with raises_one_line(DatasetError, names=(tmp_path / "nowhere",)):
        train(quick_config(tmp_path / "nowhere"), run_dir, scorer=scorer, progress=False)
    assert not (tmp_path / "runs").exists()
    missing_model = quick_config(data_root).with_overrides({"model": {"name_or_path": str(tmp_path / "no-model")}})
    with pytest.raises((OSError, ValueError, RuntimeError)):
        train(missing_model, run_dir, progress=False)
    assert not (tmp_path / "runs").exists()
    train(quick_config(data_root, epochs=1), run_dir, scorer=scorer, progress=False)
    assert run_status(run_dir) == "finished"


def test_a_cache_that_cannot_be_made_or_a_first_epoch_that_fails_leaves_no_run_folder(data_root, scorer, tmp_path,
                                                                                       monkeypatch):
    import vpkit.train

    run_dir = tmp_path / "runs" / "exp04"
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError):
        train(quick_config(data_root, cache_dir=str(blocker / "cache")), run_dir, scorer=scorer, progress=False)
    assert not (tmp_path / "runs").exists()  # before: config.yaml, state.json, ... of a run that never started

    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(vpkit.train, "train_one_epoch", out_of_memory)
        with pytest.raises(RuntimeError, match="out of memory"):
            train(quick_config(data_root), run_dir, scorer=scorer, progress=False)
    assert not (tmp_path / "runs").exists()
    train(quick_config(data_root, epochs=1), run_dir, scorer=scorer, progress=False)  # no --overwrite needed
    assert run_status(run_dir) == "finished"


def test_a_failed_overwrite_leaves_the_old_run_as_it_was(data_root, scorer, tmp_path):
    run_dir = tmp_path / "run"
    train(quick_config(data_root, epochs=1), run_dir, scorer=scorer, progress=False)
    before = {path.name: sha256(path) for path in run_dir.iterdir() if path.is_file()}
    with pytest.raises(DatasetError):
        train(quick_config(tmp_path / "nowhere", epochs=1), run_dir, overwrite=True, scorer=scorer, progress=False)
    assert {path.name: sha256(path) for path in run_dir.iterdir() if path.is_file()} == before
    assert run_status(run_dir) == "finished"


def test_a_failed_start_in_an_existing_empty_folder_keeps_the_folder_empty(data_root, scorer, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()  # made by the user: kept
    with pytest.raises(DatasetError):
        train(quick_config(tmp_path / "nowhere"), run_dir, scorer=scorer, progress=False)
    assert [p.name for p in run_dir.iterdir()] in ([], [".vpkit.lock"])  # the lock file is hidden and ignored
    assert run_status(run_dir) == "new"


def test_a_folder_holds_the_same_run_when_the_settings_resolved_for_its_device_and_model_match(tmp_path):
    from vpkit import provenance
    from vpkit.config import paper_config, resolve_for_model
    from vpkit.runs import compare_with_run, write_config

    asked = paper_config(4)  # 30 px padding at 448 px, fp16
    recorded, _ = resolve_for_model(asked, 224, "cpu")  # as a tiny-model run on a CPU recorded it: 15 px, fp32
    provenance.write_record(tmp_path, "training", [])  # a folder of this vpkit's format
    write_config(tmp_path, recorded)
    assert compare_with_run(tmp_path, asked, "cpu").same
    assert compare_with_run(tmp_path, asked.with_overrides({"train": {"num_workers": 7}}), "cpu").same
    on_gpu = compare_with_run(tmp_path, asked, "cuda")  # fp16 there: another precision, another run
    assert not on_gpu.same and on_gpu.changed() == [("model", "dtype"), ("train", "amp")]
    assert not compare_with_run(tmp_path, asked, "cpu", image_size=448).same  # a model of another input size
    slower = compare_with_run(tmp_path, asked.with_overrides({"train": {"lr": 30.0}}), "cpu")
    assert not slower.same and slower.changed() == [("train", "lr")]
