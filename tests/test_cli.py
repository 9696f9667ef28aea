"""`vpkit ...` through main([...]): experiments, train --limit, eval (run, all images, zero-shot), score,
import-prompt, and the one-line errors."""

import json

import pandas as pd
import pytest
import torch

import vpkit.models
from vpkit import __version__
from vpkit.cli import build_parser, main
from vpkit.runs import load_prompt_checkpoint


@pytest.fixture(scope="module", autouse=True)
def load_tiny_once():
    """Every command loads the real tiny-random scorer; build it once for this module (it takes seconds)."""
    real, loaded = vpkit.models.load_scorer, {}

    def cached(model, **options):
        key = (str(model), json.dumps(options, sort_keys=True, default=str))
        if key not in loaded:
            loaded[key] = real(model, **options)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(vpkit.models, "load_scorer", cached)
        yield


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data_root):
    run = tmp_path_factory.mktemp("runs") / "exp04"
    args = [
        "train",
        "4",
        "--model",
        "tiny-random",
        "--data-root",
        str(data_root),
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--limit",
        "4",
        "--num-workers",
        "0",
        "--out",
        str(run),
        "--quiet",
    ]
    assert main(args) == 0
    return run, args


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"vpkit {__version__}"


def test_data_and_reproduce_commands_are_wired_in():
    parser = build_parser()
    assert callable(parser.parse_args(["data", "check", "somewhere"]).handler)
    assert callable(parser.parse_args(["reproduce", "--profile", "demo"]).handler)


def test_experiments_lists_the_33_with_parameter_counts(capsys):
    assert main(["experiments"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 34 and lines[0].split()[:3] == ["number", "name", "dataset"]
    assert lines[4].split() == [
        "4",
        "exp_04_kadid_padding_30px_add",
        "kadid",
        "padding",
        "30",
        "add",
        "32",
        "25",
        "150480",
    ]
    assert lines[19].split()[-1] == str(3 * 448 * 448)
    assert main(["experiments", "--image-size", "224"]) == 0
    assert capsys.readouterr().out.splitlines()[4].split()[4] == "15"


def test_train_writes_a_run_and_reports_it_finished_the_second_time(trained_run, capsys):
    run, args = trained_run
    assert json.loads((run / "test.json").read_text())["n_images"] == 4
    assert main(args) == 0
    assert "already finished" in capsys.readouterr().out
    assert main(["runs", str(run.parent)]) == 0
    assert "exp_04_kadid_padding_30px_add" in capsys.readouterr().out


def test_eval_scores_any_split_of_the_data_and_zero_shot(trained_run, data_root, tmp_path, capsys):
    run, _ = trained_run
    assert main(["eval", str(run), "--split", "test", "--quiet", "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (
        metrics["n_images"] == 6
        and metrics["dataset"] == "kadid"
        and metrics["source"].endswith("best.safetensors")
    )
    run_predictions = pd.read_csv(run / "predictions.csv").set_index("name")
    eval_predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv").set_index("name")
    assert eval_predictions.loc[run_predictions.index, "score"].to_numpy() == pytest.approx(
        run_predictions["score"].to_numpy(), abs=1e-5
    )
    capsys.readouterr()

    assert main(["eval", str(run), "--split", "all", "--limit", "5", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 5
    assert (
        main(
            [
                "eval",
                "--zero-shot",
                "--model",
                "tiny-random",
                "--dataset",
                "kadid",
                "--data-root",
                str(data_root),
                "--split",
                "val",
                "--quiet",
            ]
        )
        == 0
    )
    zero_shot = json.loads(capsys.readouterr().out)
    assert zero_shot["source"] == "zero-shot" and zero_shot["n_images"] == 6


def test_score_rates_image_files_like_the_run_did(trained_run, data_root, tmp_path, capsys):
    run, _ = trained_run
    predictions = pd.read_csv(run / "predictions.csv")
    images = data_root / "kadid10k" / "images"
    files = [str(images / name) for name in predictions["name"]]
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), *files, "--out", str(out), "--quiet"]) == 0
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["path", "score"] and list(scores["path"]) == files
    assert scores["score"].to_numpy() == pytest.approx(predictions["score"].to_numpy(), abs=1e-5)
    capsys.readouterr()
    assert main(["score", str(run), str(images), "--quiet"]) == 0  # a folder: every image in it
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + len(list(images.glob("*.png")))


def test_import_prompt_turns_a_paper_checkpoint_into_an_evaluable_run(
    trained_run, data_root, tmp_path, capsys
):
    run, _ = trained_run
    state, _ = load_prompt_checkpoint(run / "best.safetensors")
    pth = tmp_path / "visual_prompt.pth"
    torch.save(state, pth)  # the paper saves prompter.state_dict() with torch.save
    imported = tmp_path / "imported"
    common = ["import-prompt", str(pth), "--experiment", "4", "--image-size", "224", "--model", "tiny-random"]
    assert main([*common, "--size", "10", "--out", str(imported)]) == 2  # the file holds a 15 px padding
    assert "size=15, image_size=224" in capsys.readouterr().err
    assert main([*common, "--size", "15", "--out", str(imported)]) == 0
    capsys.readouterr()

    assert main(["eval", str(run), "--quiet"]) == 0
    from_run = json.loads(capsys.readouterr().out)
    assert main(["eval", str(imported), "--data-root", str(data_root), "--quiet"]) == 0
    from_import = json.loads(capsys.readouterr().out)
    assert from_import["srcc"] == from_run["srcc"] and from_import["plcc"] == pytest.approx(from_run["plcc"])


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "99"], "experiment number 99 does not exist"),
        (["train", "4", "--epochs", "0"], "command line: train.epochs = 0 must be >= 1"),
        (["eval", "--dataset", "kadid"], "give a run folder or checkpoint, or --zero-shot"),
        (["import-prompt", "missing.pth", "--out", "x"], "say what the prompt is"),
    ],
)
def test_errors_are_one_line_that_names_the_problem(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
