"""`vpkit ...` through main([...]): experiments, train --limit, eval (run, all images, zero-shot), score,
import-prompt, and the one-line errors."""

import json

import pandas as pd
import pytest
import torch
from _messages import assert_one_line_error

import vpkit.models
from vpkit import __version__, provenance
from vpkit.cli import build_parser, main
from vpkit.prompters import build_prompter
from vpkit.runs import load_prompt_checkpoint, save_prompt_checkpoint


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


def test_the_command_line_starts_without_torch():
    """`vpkit --help` (and every parser) builds without importing torch: seconds on a login node's cold disk."""
    import subprocess
    import sys

    script = "import sys; from vpkit.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_data_and_reproduce_commands_are_wired_in():
    parser = build_parser()
    assert callable(parser.parse_args(["data", "check", "somewhere"]).handler)
    assert callable(parser.parse_args(["reproduce", "--profile", "demo"]).handler)


@pytest.mark.parametrize("flags, mode", [([], None), (["--checkpointing"], "full"),
                                         (["--checkpointing", "selective"], "selective"),
                                         (["--checkpointing", "off"], "off")])
def test_train_checkpointing_flag_takes_a_mode_and_alone_means_full(flags, mode):
    from vpkit.cli import train_overrides

    args = build_parser().parse_args(["train", "4", *flags, "--compile-cache-dir", "/shared/cc"])
    assert train_overrides(args)["train"]["checkpointing"] == mode
    assert train_overrides(args)["train"]["compile_cache_dir"] == "/shared/cc"


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
    assert main(["eval", str(run), "--subset", "test", "--quiet", "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (
        metrics["n_images"] == 6
        and metrics["dataset"] == "kadid"
        and metrics["source"].endswith("best.safetensors")
    )
    [session] = provenance.read_record(tmp_path / "eval")["sessions"]  # what made these numbers
    assert (session["outcome"], session["prompt"], session["device"]) == ("finished", metrics["source"], "cpu")
    assert session["model"]["name"] == "tiny-random" and session["data"]["root"] == str(data_root.resolve())
    run_predictions = pd.read_csv(run / "predictions.csv").set_index("name")
    eval_predictions = pd.read_csv(tmp_path / "eval" / "predictions.csv").set_index("name")
    assert eval_predictions.loc[run_predictions.index, "score"].to_numpy() == pytest.approx(
        run_predictions["score"].to_numpy(), abs=1e-5
    )
    capsys.readouterr()

    assert main(["eval", str(run), "--subset", "all", "--limit", "5", "--quiet"]) == 0
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
                "--subset",
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
    assert list(scores.columns) == ["path", "score", "error"] and list(scores["path"]) == files
    assert scores["error"].isna().all()  # every file scored
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


# -- bad input through the command line: one line each, naming the file and the fix --------------------------
# (the command line's own mistakes, word for word: tests/test_golden_messages.py)


def one_line_error(capsys, args, names=(), fix=None, status=2) -> str:
    """Run `vpkit ARGS`, which must exit with `status` and print one line naming `names` with a fix."""
    assert main(args) == status
    return assert_one_line_error(capsys.readouterr().err, names, fix)


def test_damaged_checkpoints_and_configs_are_one_line_errors_naming_the_file(trained_run, tmp_path, capsys):
    import shutil

    run, _ = trained_run
    image = str(next((run.parent.parent / "x").glob("*"), run / "config.yaml"))  # any path: scoring never starts
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run, corrupt)
    data = (run / "best.safetensors").read_bytes()
    (corrupt / "best.safetensors").write_bytes(data[:100])  # truncated
    one_line_error(capsys, ["score", str(corrupt), image, "--quiet"], names=(corrupt / "best.safetensors",))

    state, _ = load_prompt_checkpoint(run / "best.safetensors")
    pth = tmp_path / "visual_prompt.pth"
    torch.save(state, pth)
    one_line_error(capsys, ["eval", str(pth), "--model", "tiny-random", "--quiet"], names=(pth,),
                   fix="vpkit import-prompt")

    for name, content in (("garbage.pth", b"garbage"), ("truncated.pth", pth.read_bytes()[:60])):
        (tmp_path / name).write_bytes(content)
        err = one_line_error(capsys, ["import-prompt", str(tmp_path / name), "--experiment", "4", "--out",
                                      str(tmp_path / "imported")], names=(tmp_path / name,))
        assert "weights_only" not in err  # torch's advice about its unpickler is no fix for a damaged file

    loose = tmp_path / "loose.safetensors"  # a checkpoint outside a run folder whose metadata lacks the type
    tensors, metadata = load_prompt_checkpoint(run / "best.safetensors")
    save_prompt_checkpoint(loose, tensors, {**metadata, "prompt": {k: v for k, v in metadata["prompt"].items()
                                                                     if k != "type"}})
    one_line_error(capsys, ["eval", str(loose), "--model", "tiny-random", "--quiet"], names=(loose, "'type'"),
                   fix="vpkit import-prompt")

    (corrupt / "best.safetensors").write_bytes(data)
    with open(corrupt / "config.yaml", "a") as config:
        config.write("  - : [\n")
    one_line_error(capsys, ["eval", str(corrupt), "--quiet"], names=(f"{corrupt / 'config.yaml'}, line",), fix=False)


def test_nan_learning_rate_and_bad_out_paths_are_named(trained_run, tmp_path, capsys):
    run, args = trained_run
    one_line_error(capsys, [*args[:-3], "--out", str(tmp_path / "nan"), "--lr", "nan"],
                   names=("command line", "train.lr", "nan"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_line_error(capsys, ["eval", str(run), "--quiet", "--out", str(blocker / "results")],
                   names=(f"error: {blocker}: Not a directory",))  # the part of the path that is a file


def test_a_failed_write_names_the_target_not_the_temporary_file(trained_run, tmp_path, capsys, monkeypatch):
    import errno

    import vpkit.runs.checkpoint

    run, _ = trained_run
    state, _ = load_prompt_checkpoint(run / "best.safetensors")
    pth = tmp_path / "visual_prompt.pth"
    torch.save(state, pth)

    def disk_full(path, data):  # the checkpoint's bytes reach a full disk (written into the temporary file)
        open(path, "wb").close()
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(vpkit.runs.checkpoint.Path, "write_bytes", disk_full)
    out = tmp_path / "imported"
    err = one_line_error(capsys, ["import-prompt", str(pth), "--experiment", "4", "--image-size", "224", "--size", "15",
                                  "--model", "tiny-random", "--out", str(out)],
                         names=(out / "best.safetensors", "No space left on device"))
    assert ".tmp" not in err
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_says_how_to_resume_and_unexpected_errors_point_to_traceback(capsys, monkeypatch):
    import vpkit.train

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(vpkit.train, "train", stopped)
    args = ["train", "4", "--model", "tiny-random", "--data-root", "my data", "--overwrite", "--out", "runs/x"]
    one_line_error(capsys, args, status=130,  # the same command, quoted for the shell, with --resume not --overwrite
                   fix="vpkit train 4 --model tiny-random --data-root 'my data' --out runs/x --resume")

    def loss_went_nan(*args, **kwargs):
        raise FloatingPointError("training loss is nan at step 3; lower train.lr or use fp32")

    monkeypatch.setattr(vpkit.train, "train", loss_went_nan)
    one_line_error(capsys, args, names=("training loss is nan at step 3",))  # the error's own line, as raised

    def bug(*args, **kwargs):
        raise KeyError("type")

    monkeypatch.setattr(vpkit.train, "train", bug)
    one_line_error(capsys, args, names=("KeyError", "'type'"), fix="--traceback")
    with pytest.raises(KeyError):
        main([*args, "--traceback"])  # also after the command
    with pytest.raises(KeyError):
        main(["--verbose", *args])


def test_runs_table_shows_every_run_and_marks_a_damaged_one(trained_run, tmp_path, capsys):
    import shutil

    run, _ = trained_run
    root = tmp_path / "runs"
    shutil.copytree(run, root / "good")
    shutil.copytree(run, root / "damaged")
    (root / "damaged" / "metrics.jsonl").write_text('{"epoch": 1\n')
    shutil.copytree(run, root / "older")
    (root / "older" / "provenance.json").unlink()  # as a vpkit before run folder formats left it
    assert main(["runs", str(root)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and out.count("damaged") >= 2
    assert f"damaged: {root / 'damaged' / 'metrics.jsonl'}, line 1: damaged JSON" in out
    assert f"other format: {root / 'older'}: made by an earlier vpkit (no provenance.json;" in out


def test_runs_shows_what_made_each_run_with_provenance(trained_run, tmp_path, capsys):
    run, _ = trained_run
    assert main(["runs", str(run.parent), "--provenance", "--out", str(tmp_path / "made.csv")]) == 0
    out = capsys.readouterr().out
    facts = provenance.environment_facts()
    assert "exp_04_kadid_padding_30px_add" in out and "tiny-random" in out and facts["torch"] in out
    [row] = pd.read_csv(tmp_path / "made.csv").to_dict("records")
    assert (row["status"], row["sessions"], row["outcome"], row["device"]) == ("finished", 1, "finished", "cpu")
    assert row["vpkit"] == provenance.vpkit_label(facts) and row["host"] == facts["host"]
    assert row["started"] <= row["ended"] and "test_srcc" not in row  # what made it, not its results


def test_score_scores_what_it_can_and_lists_the_rest(trained_run, data_root, tmp_path, capsys):
    import os
    import shutil

    run, _ = trained_run
    source = min((data_root / "kadid10k" / "images").glob("*.png"))
    folder = tmp_path / "mine"
    (folder / "nested").mkdir(parents=True)
    (folder / "x.png").mkdir()  # a folder with an image's name
    shutil.copy(source, folder / "a.png")
    shutil.copy(source, folder / "nested" / "b.png")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    odd = os.fsdecode(os.fsencode(str(folder)) + b"/caf\xe9.png")  # a Latin-1 file name: not UTF-8
    shutil.copy(source, odd)
    out = tmp_path / "scores.csv"
    assert main(["score", str(run), str(folder), str(folder / "x.png"), "--out", str(out), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "could not score 2 of 5 file(s)" in captured.err
    assert f"{folder / 'x.png'}: is a folder with no image files" in captured.err
    assert f"{folder / 'broken.jpg'}: cannot be read as an image" in captured.err
    assert "caf\\xe9.png" in captured.out and str(folder / "nested" / "b.png") in captured.out
    scores = pd.read_csv(out, encoding_errors="surrogateescape", keep_default_na=False)
    assert list(scores.columns) == ["path", "score", "error"] and odd in set(scores["path"])
    scored = scores[scores["error"] == ""]
    assert len(scored) == 3 and scored["score"].astype(float).nunique() == 1  # the same picture three times


def test_a_model_folder_without_tokenizer_is_named(data_root, tmp_path, capsys):
    import shutil

    from vpkit.models import TINY_ASSET_DIR

    model = tmp_path / "model"
    shutil.copytree(TINY_ASSET_DIR, model)
    (model / "tokenizer.json").unlink()
    err = one_line_error(capsys, ["eval", "--zero-shot", "--model", str(model), "--dataset", "kadid",
                                  "--data-root", str(data_root), "--quiet"],
                         names=(f"error: {model}: ", "tokenizer.json", "tokenizer.model"))
    assert "unexpected" not in err


def test_any_file_the_unpickler_cannot_read_is_one_line_naming_it(tmp_path, capsys):
    """Whatever torch's weights-only unpickler raises (KeyError on a text file's first byte, IndexError, EOFError,
    UnicodeDecodeError, its UnpicklingError, with a warning about the pickle protocol first), one line names it."""
    import pickle

    contents = {
        "text.pth": b"hello, this is a text file\n",  # before: "KeyError: 101 (unexpected here ...)"
        "index.pth": b"\x80\x02)\x81.",
        "unicode.pth": b"\x80\x02X\x02\x00\x00\x00\xff\xfe.",
        "protocol4.pth": pickle.dumps({"pad_up": [1.0]}, protocol=4),  # a pickle, but not of tensors
    }
    for name, content in contents.items():
        (tmp_path / name).write_bytes(content)
        one_line_error(capsys, ["import-prompt", str(tmp_path / name), "--experiment", "4", "--out",
                                str(tmp_path / "imported")], names=(f"error: {tmp_path / name}: ",))
        assert not (tmp_path / "imported").exists()


def test_a_checkpoint_whose_tensors_are_not_the_prompt_it_describes_is_named_with_the_fix(trained_run, tmp_path,
                                                                                          capsys):
    import shutil

    run, _ = trained_run
    _, metadata = load_prompt_checkpoint(run / "best.safetensors")  # padding 15 px at 224 px
    others = {"size": build_prompter("padding", size=20, image_size=224),  # another size, the same metadata
              "type": build_prompter("full", image_size=224)}  # metadata saying padding over a full prompt
    for what, prompter in others.items():
        copy = tmp_path / what
        shutil.copytree(run, copy)
        save_prompt_checkpoint(copy / "best.safetensors", prompter.state_dict(), metadata)
        err = one_line_error(capsys, ["eval", str(copy), "--quiet"],  # before: "state dict: 'pad_up' has shape"
                             names=(f"error: {copy / 'best.safetensors'}: ", "metadata",
                                    f"`vpkit train {copy / 'config.yaml'} --out {copy} --overwrite`"),
                             fix=f"`vpkit import-prompt {copy / 'best.safetensors'} --type TYPE --size N")
        assert "state dict" not in err, what
        loose = tmp_path / f"{what}.safetensors"  # outside a run folder: no run to train again
        shutil.copyfile(copy / "best.safetensors", loose)
        err = one_line_error(capsys, ["eval", str(loose), "--data-root", "x", "--quiet"],
                             names=(f"error: {loose}: ",), fix="vpkit import-prompt")
        assert "vpkit train" not in err


def test_a_damaged_test_json_of_a_finished_run_is_named_when_its_command_runs_again(trained_run, tmp_path, capsys):
    import shutil

    run, args = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    text = (copy / "test.json").read_text()
    (copy / "test.json").write_text(text[:15])  # cut off mid-string, as a full disk leaves it
    one_line_error(capsys, [*args[:-3], "--out", str(copy)],  # before: "Unterminated string starting at:"
                   names=(f"error: {copy / 'test.json'}: ",), fix="--overwrite")
    assert main(["runs", str(copy)]) == 0  # before: KeyError: 'number' when every run is damaged
    assert f"{copy / 'test.json'}: damaged JSON" in capsys.readouterr().out


def test_score_follows_symbolic_links_to_folders_without_looping(tmp_path):
    from vpkit.cli import image_files

    real = tmp_path / "real"
    (real / "deeper").mkdir(parents=True)
    for name in ("a.png", "deeper/b.jpg", "notes.txt"):
        (real / name).write_bytes(b"x")
    dataset = tmp_path / "kadid10k"
    dataset.mkdir()
    (dataset / "images").symlink_to(real, target_is_directory=True)  # as `ln -s /big/disk/images images`
    (real / "deeper" / "up").symlink_to(real, target_is_directory=True)  # a loop back up
    files, others = image_files([str(dataset)])
    assert files == [dataset / "images" / "a.png", dataset / "images" / "deeper" / "b.jpg"] and others == 1


def test_score_says_which_images_carry_a_rotation_it_ignores(trained_run, data_root, tmp_path, capsys):
    from PIL import Image

    run, _ = trained_run
    source = min((data_root / "kadid10k" / "images").glob("*.png"))
    exif = Image.Exif()
    exif[0x0112] = 6  # viewers show it turned 90 degrees clockwise
    with Image.open(source) as image:
        image.convert("RGB").save(tmp_path / "phone.jpg", exif=exif)
        image.convert("RGB").save(tmp_path / "plain.jpg")
    assert main(["score", str(run), str(tmp_path / "phone.jpg"), str(tmp_path / "plain.jpg"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"note: 1 image(s) carry an EXIF orientation that vpkit ignores: {tmp_path / 'phone.jpg'} "
                          "(orientation 6); their pixels are used as stored")
    assert len(err.splitlines()) == 1 and "plain.jpg" not in err


def test_the_split_scheme_and_the_subset_of_images_have_their_own_options():
    parser = build_parser()
    assert parser.parse_args(["train", "4", "--split-scheme", "content"]).split_scheme == "content"
    evaluated = parser.parse_args(["eval", "run", "--subset", "all", "--split-scheme", "random"])
    assert (evaluated.subset, evaluated.split_scheme) == ("all", "random")
    assert parser.parse_args(["data", "check", "root", "--split-scheme", "random"]).split_scheme == "random"
