"""The training loop end to end on the random-weight tiny model and a generated KADID-style set."""

import json

import pandas as pd
import pytest
import torch
from _messages import raises_one_line

from vpkit.config import paper_config
from vpkit.evaluate import evaluate_on_dataset, load_trained_prompt
from vpkit.models import load_scorer
from vpkit.runs import RunFolderError, load_prompt_checkpoint, read_run, run_status
from vpkit.train import train

TIMING_COLUMNS = ("train_seconds", "train_images_per_s", "train_data_wait_s")


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("tiny-random")


def quick_config(data_root, **train):
    # 4 images per split, one step per epoch; momentum so that resuming must restore the optimizer state
    settings = {"epochs": 2, "batch_size": 4, "limit": 4, "momentum": 0.9, "num_workers": 0, **train}
    return paper_config(4).with_overrides(
        {"model": {"name_or_path": "tiny-random"}, "dataset": {"root": str(data_root)}, "train": settings}
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_root, scorer):
    run_dir = tmp_path_factory.mktemp("runs") / "exp04"
    epochs_seen = []
    test = train(
        quick_config(data_root), run_dir, scorer=scorer, callbacks=[epochs_seen.append], progress=False
    )
    return run_dir, test, epochs_seen


def test_a_padding_prompt_trains_into_a_complete_run_folder(finished_run, data_root):
    run_dir, test, epochs_seen = finished_run
    names = {p.name for p in run_dir.iterdir() if not p.name.startswith(".")}
    assert {p.name for p in run_dir.iterdir()} - names == {".vpkit.lock"}  # the owner record goes on release
    assert {
        "config.yaml",
        "metrics.csv",
        "metrics.jsonl",
        "epoch-01.safetensors",
        "epoch-02.safetensors",
        "best.safetensors",
        "test.json",
        "predictions.csv",
        "state.json",
        "trainer-state-02.pt",
        "data.json",
        "data-images.csv",
        "provenance.json",
    } == names

    record = read_run(run_dir)
    # the paper's 30 px at 448 px is 15 px at the tiny model's 224 px, and the resolved config says so
    assert (record.config.prompt.size, record.config.prompt.image_size) == (15, 224)
    assert (record.config.model.dtype, record.config.train.amp) == ("fp32", "none")
    assert record.status == "finished" and record.state.epoch == 2
    assert list(record.metrics["epoch"]) == [1, 2] and [row["epoch"] for row in epochs_seen] == [1, 2]
    best = int(record.metrics.loc[record.metrics["val_selection"].idxmax(), "epoch"])
    assert record.state.best_epoch == best == test["best_epoch"]
    assert (record.metrics["train_loss"] > 0).all() and record.metrics["val_srcc"].between(-1, 1).all()
    assert record.metrics["train_data_wait_s"].between(0, record.metrics["train_seconds"].max()).all()

    best_state, metadata = load_prompt_checkpoint(run_dir / "best.safetensors")
    epoch_state, _ = load_prompt_checkpoint(run_dir / f"epoch-{best:02d}.safetensors")
    assert set(best_state) == {"pad_up", "pad_down", "pad_left", "pad_right"}
    assert all(torch.equal(best_state[k], epoch_state[k]) for k in best_state)
    assert metadata["epoch"] == best and metadata["config_hash"] == record.config.hash()
    assert metadata["prompt"]["size"] == 15 and metadata["metrics"]["val_srcc"] == pytest.approx(
        float(record.metrics.loc[best - 1, "val_srcc"])
    )

    first, _ = load_prompt_checkpoint(run_dir / "epoch-01.safetensors")
    second, _ = load_prompt_checkpoint(run_dir / "epoch-02.safetensors")
    assert not torch.equal(first["pad_up"], second["pad_up"])  # SGD moved the prompt

    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert list(predictions.columns) == ["name", "mos", "label", "score"] and len(predictions) == 4
    assert predictions["label"].to_numpy() == pytest.approx(predictions["mos"].to_numpy() / 5.0)
    assert predictions["score"].between(0, 1).all()
    assert json.loads((run_dir / "test.json").read_text()) == test
    assert {"srcc", "plcc", "krcc", "plcc_logistic4", "plcc_logistic5", "selection"} <= set(test)
    assert test["n_images"] == 4 and -1 <= test["srcc"] <= 1


def test_the_saved_best_prompt_scores_the_test_split_as_the_run_did(finished_run, data_root, scorer):
    run_dir, _, _ = finished_run
    trained = load_trained_prompt(run_dir)
    saved = pd.read_csv(run_dir / "predictions.csv")
    metrics, predictions = evaluate_on_dataset(
        scorer, trained.prompter, "kadid", data_root, "test", num_workers=0, progress=False
    )
    predictions = predictions.set_index("name").loc[saved["name"]]  # the run scored a seeded sample of 4
    assert predictions["score"].to_numpy() == pytest.approx(saved["score"].to_numpy(), abs=1e-6)
    assert metrics["n_images"] == 6


def test_a_finished_run_is_reported_and_other_settings_are_refused(finished_run, data_root, scorer, capsys):
    run_dir, test, _ = finished_run
    assert train(quick_config(data_root), run_dir, scorer=scorer, progress=False) == test
    assert "already finished" in capsys.readouterr().out
    with raises_one_line(RunFolderError, names=(run_dir, "train.lr: 60.0 -> 30.0"), fix="--overwrite"):
        train(quick_config(data_root, lr=30.0), run_dir, scorer=scorer, progress=False)


def test_a_killed_run_resumes_to_the_same_result(finished_run, data_root, scorer, tmp_path):
    reference_dir, reference_test, _ = finished_run
    run_dir = tmp_path / "killed"

    def kill_after_first_epoch(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train(
            quick_config(data_root),
            run_dir,
            scorer=scorer,
            callbacks=[kill_after_first_epoch],
            progress=False,
        )
    assert run_status(run_dir) == "partial"
    with raises_one_line(RunFolderError, names=(run_dir,), fix="--resume"):
        train(quick_config(data_root), run_dir, scorer=scorer, progress=False)

    resumed_test = train(quick_config(data_root), run_dir, resume=True, scorer=scorer, progress=False)
    for key in ("srcc", "plcc", "krcc", "best_epoch", "n_images"):
        assert resumed_test[key] == reference_test[key], key
    resumed, _ = load_prompt_checkpoint(run_dir / "best.safetensors")
    reference, _ = load_prompt_checkpoint(reference_dir / "best.safetensors")
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    drop = list(TIMING_COLUMNS)
    pd.testing.assert_frame_equal(
        read_run(run_dir).metrics.drop(columns=drop), read_run(reference_dir).metrics.drop(columns=drop)
    )


def test_early_stopping_after_patience_epochs_without_improvement(data_root, scorer, tmp_path):
    # lr far below float32 resolution of the prompt: it never changes, so validation never improves
    config = quick_config(data_root, epochs=6, patience=2, lr=1e-12, momentum=0.0)

    def kill_at_the_stopping_epoch(row):
        if row["epoch"] == 3:
            raise KeyboardInterrupt("killed before the test split was scored")

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", scorer=scorer, callbacks=[kill_at_the_stopping_epoch], progress=False)
    test = train(config, tmp_path / "run", resume=True, scorer=scorer, progress=False)  # straight to the test
    record = read_run(tmp_path / "run")
    assert list(record.metrics["epoch"]) == [1, 2, 3] and list(record.metrics["best"]) == [True, False, False]
    assert record.state.stopped_early and test["best_epoch"] == 1 and test["epochs_run"] == 3


def test_a_settings_note_is_said_once_per_process(capsys):
    from vpkit.train import say_once

    for _ in range(3):
        say_once("note: a test note about settings")
    say_once("note: another")
    assert capsys.readouterr().out == "note: a test note about settings\nnote: another\n"
