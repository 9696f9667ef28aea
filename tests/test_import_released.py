"""`vpkit import-prompt` on the paper's released layout: Hugging Face Trainer experiment folders.

The fabricated folder has the shape the paper's README describes and its trainer.py produces:
final_mplug_owl2_exps/SGD_mplug2_exp_04_kadid_padding_30px_add/checkpoint-<step>/{visual_prompt.pth,
trainer_state.json}, one checkpoint per epoch, the best named by `best_model_checkpoint` in the last one.
"""
import json
import shutil

import pytest
import torch

from vpkit.cli import main
from vpkit.evaluate import load_trained_prompt
from vpkit.prompters import build_prompter
from vpkit.runs import epoch_checkpoint_name, load_prompt_checkpoint, read_metrics, read_state

OUTPUT_DIR = "final_mplug_owl2_exps/SGD_mplug2_exp_04_kadid_padding_30px_add"
STEPS_PER_EPOCH = 62  # 62, 124, 186: sorted as text, checkpoint-62 would come last
BEST_EPOCH = 2
VALIDATION = {1: (0.1, 0.3), 2: (0.5, 0.5), 3: (0.4, 0.4)}  # epoch: (SRCC, PLCC) as the paper's trainer logs them


def write_checkpoint(experiment, epoch: int, best_epoch: int) -> torch.Tensor:
    folder = experiment / f"checkpoint-{epoch * STEPS_PER_EPOCH}"
    folder.mkdir(parents=True)
    prompter = build_prompter("padding", size=30, image_size=448)  # experiment 4's prompt
    with torch.no_grad():
        for parameter in prompter.parameters():
            parameter.fill_(epoch / 10)
    torch.save(prompter.state_dict(), folder / "visual_prompt.pth")
    state = {
        "best_metric": 0.9,
        "best_model_checkpoint": f"{OUTPUT_DIR}/checkpoint-{best_epoch * STEPS_PER_EPOCH}",
        "epoch": float(epoch),
        "global_step": epoch * STEPS_PER_EPOCH,
        "log_history": [
            {"epoch": float(e), "eval_srocc": VALIDATION[e][0], "eval_plcc": VALIDATION[e][1],
             "eval_metric": sum(VALIDATION[e]) / 2, "step": e * STEPS_PER_EPOCH}
            for e in range(1, epoch + 1)
        ],
    }
    (folder / "trainer_state.json").write_text(json.dumps(state))
    return next(iter(prompter.state_dict().values()))


@pytest.fixture
def experiment(tmp_path):
    """Three epochs; each checkpoint's trainer_state names the best so far (epoch 1, then 2, then still 2)."""
    folder = tmp_path / OUTPUT_DIR
    for epoch in (1, 2, 3):
        write_checkpoint(folder, epoch, best_epoch=min(epoch, BEST_EPOCH))
    return folder


def prompt_value(checkpoint_file) -> float:
    state, _ = load_prompt_checkpoint(checkpoint_file)
    values = {round(float(v.flatten()[0]), 6) for v in state.values()}
    assert len(values) == 1
    return values.pop()


def test_an_experiment_folder_imports_its_best_checkpoint(experiment, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import-prompt", str(experiment), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "experiment 4, read from the folder name SGD_mplug2_exp_04_kadid_padding_30px_add" in printed
    assert "checkpoint-124" in printed and "best_model_checkpoint in checkpoint-186/trainer_state.json" in printed
    trained = load_trained_prompt(out)
    assert trained.config.number == 4 and trained.config.train.max_grad_norm == 1.0
    assert prompt_value(out / "best.safetensors") == pytest.approx(BEST_EPOCH / 10)
    assert trained.metadata["epoch"] == BEST_EPOCH
    assert read_state(out).best_epoch == BEST_EPOCH and read_state(out).finished


def test_every_checkpoint_can_be_imported_as_its_epoch(experiment, tmp_path):
    out = tmp_path / "imported"
    assert main(["import-prompt", str(experiment), "--all-checkpoints", "--out", str(out)]) == 0
    for epoch in (1, 2, 3):
        assert prompt_value(out / epoch_checkpoint_name(epoch)) == pytest.approx(epoch / 10)
    assert prompt_value(out / "best.safetensors") == pytest.approx(BEST_EPOCH / 10)
    assert (read_state(out).epoch, read_state(out).best_epoch) == (3, BEST_EPOCH)
    # the validation metrics the paper's trainer logged, one row per epoch, in vpkit's names
    rows = read_metrics(out)
    assert [(r["epoch"], r["val_srcc"], r["val_plcc"], r["best"]) for r in rows] == [
        (1, 0.1, 0.3, True), (2, 0.5, 0.5, True), (3, 0.4, 0.4, False)
    ]
    assert [r["val_selection"] for r in rows] == pytest.approx([0.2, 0.5, 0.4])


def test_one_checkpoint_folder_is_imported_as_given(experiment, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import-prompt", str(experiment / "checkpoint-186"), "--out", str(out)]) == 0
    assert "experiment 4, read from the folder name" in capsys.readouterr().out
    assert prompt_value(out / "best.safetensors") == pytest.approx(0.3)
    assert read_state(out).best_epoch == 3


def test_an_explicit_experiment_wins_over_the_folder_name(experiment, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import-prompt", str(experiment), "--experiment", "5", "--out", str(out)]) == 0
    assert "--experiment 5 used, although the folder SGD_mplug2_exp_04" in capsys.readouterr().out
    assert load_trained_prompt(out).config.number == 5


def break_no_checkpoints(experiment):
    for folder in experiment.glob("checkpoint-*"):
        shutil.rmtree(folder)


def break_no_best_key(experiment):
    state_file = experiment / "checkpoint-186" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["best_model_checkpoint"]
    state_file.write_text(json.dumps(state))


def break_best_missing(experiment):
    shutil.rmtree(experiment / "checkpoint-124")


@pytest.mark.parametrize(
    "damage, message",
    [
        (break_no_checkpoints, "holds neither visual_prompt.pth nor checkpoint-NNNN folders"),
        (break_no_best_key, "checkpoint-186/trainer_state.json: has no best_model_checkpoint"),
        (break_best_missing, "best_model_checkpoint names checkpoint-124, but"),
    ],
)
def test_a_broken_experiment_folder_is_one_clear_line(experiment, tmp_path, capsys, damage, message):
    damage(experiment)
    assert main(["import-prompt", str(experiment), "--out", str(tmp_path / "imported")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "imported").exists()
