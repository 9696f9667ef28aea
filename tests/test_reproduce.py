"""vpkit.reproduce: profiles, notebook settings, which experiments run, zero-shot score types, failures."""
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch

from vpkit import plan, provenance, reproduce
from vpkit.config import paper_config, resolve_for_model
from vpkit.reproduce import ReproduceError
from vpkit.runs import RunState, write_config, write_state

GOOD_PROFILE = """
description: test
required: [model]
parameters:
  model: null
  data_root: demo
  experiments: [4, 10]
  mul_residual: []
  epochs: 1
  batch_size: 8
  lr: 30
  limit: 16
  device: cpu
  seed: 1
  extra_seeds: {}
"""


def write_profile(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """A very small KADID-style synthetic set (5 references, 36/12/12 images)."""
    from vpkit.data.synth import generate

    root = tmp_path_factory.mktemp("synth")
    generate(root, n_refs=5, distortions=["jpeg", "pixelate", "brighten", "darken"], levels=(1, 3, 5),
             size=(64, 48), progress=False, workers=1)
    return root


def settings_for(root: Path, tmp_path: Path, **changes) -> plan.Settings:
    values = {"model": "tiny-random", "data_root": str(root), "experiments": None, "mul_residual": [],
              "epochs": 1, "batch_size": 8,
              "lr": None, "limit": 16, "device": "cpu", "out_dir": str(tmp_path / "out"),
              "figures_dir": str(tmp_path / "fig"), "seed": 42, "extra_seeds": {}}
    values.update(changes)
    return reproduce.notebook_settings(**values)


# ----------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("name", ["demo", "paper"])
def test_shipped_profiles_are_valid_and_complete(name):
    profile = reproduce.load_profile(name)
    assert set(profile.parameters) == set(plan.PARAMETERS) - set(plan.OUTPUT_PARAMETERS)
    assert profile.path == reproduce.PROFILES_DIR / f"{name}.yaml"


def test_demo_profile_runs_one_add_mul_pair_of_each_family_on_cpu():
    from vpkit.config import paper_experiment

    profile = reproduce.load_profile("demo")
    experiments = [paper_experiment(n) for n in profile.parameters["experiments"]]
    assert {e.dataset for e in experiments} == {"kadid"}  # the demo set has KADID's layout only
    assert {(e.prompt_type, e.mode) for e in experiments} == {(f, m) for f in plan.FAMILIES for m in ("add", "mul")}
    assert profile.parameters["device"] == "cpu" and profile.parameters["data_root"] == "demo"
    assert profile.required == ()
    assert profile.parameters["mul_residual"] == [22]  # the fix beside the paper's black 30 px padding mul
    assert reproduce.load_profile("paper").parameters["mul_residual"] == []  # the paper's 33 runs only


def test_paper_profile_needs_only_the_data_root_its_model_is_the_papers_hub_id(tmp_path):
    from vpkit.paper import PAPER_MODEL, RELEASED_REPO

    profile = reproduce.load_profile("paper")
    assert profile.parameters["experiments"] is None and profile.parameters["epochs"] is None
    assert profile.parameters["model"] == PAPER_MODEL and profile.released is None
    with pytest.raises(ReproduceError, match="needs --data-root"):
        reproduce.profile_parameters(profile, {}, tmp_path)
    released = reproduce.load_profile("released")
    assert released.released == RELEASED_REPO and released.parameters["model"] == PAPER_MODEL
    assert released.required == ("data_root",)


def test_profile_parameters_merge_overrides_and_resolve_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    profile = reproduce.load_profile(write_profile(tmp_path, GOOD_PROFILE))
    assert profile.parameters["lr"] == 30.0 and profile.required == ("model",)
    parameters = reproduce.profile_parameters(profile, {"model": "weights", "epochs": 3, "lr": None}, "out")
    assert parameters["model"] == str(tmp_path / "weights")
    assert parameters["epochs"] == 3 and parameters["lr"] == 30.0  # None keeps the profile's value
    assert parameters["out_dir"] == str(tmp_path / "out")
    assert parameters["figures_dir"] == str(tmp_path / "out" / "figures")
    assert parameters["data_root"] == "demo"
    assert profile.parameters["mul_residual"] == [] == parameters["mul_residual"]
    again = reproduce.profile_parameters(profile, {"model": "weights", "mul_residual": [31, 22]}, "out")
    assert again["mul_residual"] == [22, 31]


def test_a_mul_residual_variant_left_out_by_experiments_is_said_once(tmp_path, monkeypatch, capsys):
    """A variant is trained with its experiment: when --experiments leaves that experiment out, one note says the
    variant will not be trained and how to keep it, instead of dropping it silently."""
    monkeypatch.chdir(tmp_path)
    profile = reproduce.load_profile("demo")
    reproduce.profile_parameters(profile, {"experiments": [4, 10]}, "out")
    note = capsys.readouterr().out
    assert note.count("\n") == 1 and "mul_residual 22 will not be trained" in note and "--experiments" in note
    reproduce.profile_parameters(profile, {"experiments": [4, 22]}, "out")
    reproduce.profile_parameters(profile, {}, "out")  # experiments from the profile: all its own, 22 among them
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("change, message", [
    (("epochs: 1", "epochs: three"), r"parameters: epochs = 'three' must be int or null"),
    (("experiments: [4, 10]", "experiments: [4, 40]"), r"experiments = \[4, 40\]: give paper experiment numbers"),
    (("mul_residual: []", "mul_residual: [22, 4]"),
     (r"parameters: mul_residual = \[22, 4\]: experiment 4 is add, not mul; give paper mul experiment numbers "
      r"22..33 to also train with prompt mode mul_residual \(e.g. \[22\]\), or \[\] for none$")),
    (("mul_residual: []", "mul_residual: null"), r"mul_residual must be given"),
    (("limit: 16", "limit: 2"), r"limit = 2 must be >= 3"),
    (("lr: 30", "lr: .nan"), r"lr = nan must be a finite number"),
    (("seed: 1", "seed: -1"), r"seed = -1 must be >= 0"),
    (("device: cpu", "device: tpu"), r"device \(--device\) = 'tpu' is not a device vpkit runs on; use auto, cpu, cuda"),
    (("seed: 1", "seed: 1\n  colour: red"), r"unknown parameter\(s\) colour"),
    (("seed: 1", "seed: 1\n  out_dir: x"), r"parameters.out_dir is set by `vpkit reproduce --out`"),
    (("  seed: 1\n", ""), r"parameters.seed is missing"),
    (("  mul_residual: []\n", ""), r"parameters.mul_residual is missing"),
    (("description: test", "descriptoin: test"), r"unknown key\(s\) descriptoin"),
    (("required: [model]", "required: [colour]"), r"'required' must list parameter names"),
])
def test_bad_profiles_name_the_file_and_the_field(tmp_path, change, message):
    path = write_profile(tmp_path, GOOD_PROFILE.replace(*change))
    with pytest.raises(ReproduceError, match=message) as error:
        reproduce.load_profile(path)
    assert str(path) in str(error.value)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ReproduceError, match="known profiles: demo, paper, released"):
        reproduce.load_profile("nonsense")


def test_command_line_reports_a_missing_required_option(capsys):
    from vpkit.cli import main

    assert main(["reproduce", "--profile", "paper", "--model", "somewhere"]) == 2
    assert "needs --data-root" in capsys.readouterr().err


def test_command_line_mul_residual_is_checked_and_none_turns_it_off(tmp_path, capsys):
    from vpkit.cli import main

    assert main(["reproduce", "--profile", "demo", "--out", str(tmp_path), "--mul-residual", "4"]) == 2
    error = capsys.readouterr().err
    assert "mul_residual = [4]: experiment 4 is add, not mul" in error and len(error.strip().splitlines()) == 1
    assert reproduce._number_list("none", "--mul-residual") == [] and reproduce._number_list("22, 25") == [22, 25]
    with pytest.raises(ReproduceError, match=r"^--mul-residual 'x': give comma-separated numbers"):
        reproduce._number_list("x", "--mul-residual")


def test_parameter_bounds_are_the_configs_own(tmp_path, monkeypatch):
    """One home for bounds: a notebook parameter that is a config setting is checked by vpkit.config's rule."""
    from vpkit import config

    monkeypatch.chdir(tmp_path)
    profile = reproduce.load_profile("demo")
    assert reproduce.profile_parameters(profile, {"epochs": 1}, "out")["epochs"] == 1
    monkeypatch.setitem(config.BOUNDS, ("train", "epochs"), (2, True))
    with pytest.raises(ReproduceError, match=r"epochs = 1 must be >= 2"):
        reproduce.profile_parameters(profile, {"epochs": 1}, "out")


@pytest.mark.parametrize("options, message", [
    (["--lr", "nan"], "lr = nan must be a finite number"),
    (["--lr", "-1"], "lr = -1.0 must be > 0"),
    (["--batch-size", "0"], "batch_size = 0 must be >= 1"),
    (["--device", "tpu"], "'tpu' is not a device vpkit runs on; use auto, cpu, cuda or cuda:N"),
    (["--data-root", "absent-folder"], "absent-folder is not a folder"),
])
def test_every_override_is_checked_before_the_first_notebook(tmp_path, monkeypatch, capsys, options, message):
    from vpkit.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(reproduce, "run_notebooks", lambda *a, **k: pytest.fail("a notebook was started"))
    assert main(["reproduce", "--out", "out", *options]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_second_reproduction_into_one_folder_is_refused_at_once(tmp_path, monkeypatch, capsys):
    """The output folder belongs to one `vpkit reproduce`: a second one stops before any notebook (or demo data),
    in one line naming the first process as it recorded itself."""
    from filelock import FileLock

    from vpkit.atomic import write_json_atomic
    from vpkit.cli import main
    from vpkit.runs import LOCK_FILE, OWNER_FILE

    out = tmp_path / "out"
    out.mkdir()
    first = FileLock(str(out / LOCK_FILE))  # as another process holds it (an OS lock: a second open refuses)
    first.acquire()
    write_json_atomic(out / OWNER_FILE, {"pid": 4242, "host": "node7", "command": "vpkit reproduce --out out",
                                         "since": "2026-12-05 10:00:00 UTC"})
    monkeypatch.setattr(reproduce, "run_notebooks", lambda *a, **k: pytest.fail("a notebook was started"))
    try:
        assert main(["reproduce", "--out", str(out)]) == 2
    finally:
        first.release()
    error = capsys.readouterr().err.strip()
    assert error == (f"vpkit reproduce: error: {out}: in use by pid 4242 on node7 (`vpkit reproduce --out out`, "
                     "since 2026-12-05 10:00:00 UTC); wait for it to finish, or give another --out")
    assert not (out / plan.DEMO_DATA_FOLDER).exists()


def test_a_reproduction_owns_its_output_folder_while_it_runs(tmp_path, monkeypatch):
    import json
    import os

    from vpkit.cli import main
    from vpkit.runs import OWNER_FILE

    seen = {}

    def notebooks(parameters, out_dir, *args, **kwargs):
        seen["owner"] = (Path(out_dir) / OWNER_FILE).read_text()
        return {}

    monkeypatch.setattr(reproduce, "run_notebooks", notebooks)
    assert main(["reproduce", "--out", str(tmp_path / "out")]) == 0
    assert json.loads(seen["owner"])["pid"] == os.getpid()
    assert not (tmp_path / "out" / OWNER_FILE).exists()  # released after


# ----------------------------------------------------------------------------- settings and experiments


def test_notebook_settings_check_everything_and_make_folders(synth_root, tmp_path):
    settings = settings_for(synth_root, tmp_path, device="auto")
    assert settings.device == "cpu" and settings.data_root == synth_root
    assert settings.runs_dir.is_dir() and settings.tables_dir.is_dir() and settings.figures_dir.is_dir()
    with pytest.raises(ReproduceError, match="batch_size = 0 must be >= 1"):
        settings_for(synth_root, tmp_path, batch_size=0)
    with pytest.raises(ReproduceError, match="is not a folder"):
        settings_for(synth_root, tmp_path, data_root=str(tmp_path / "absent"))
    with pytest.raises(ReproduceError, match="seed missing"):
        reproduce.notebook_settings(model="tiny")


def test_demo_data_root_uses_the_existing_set(synth_root, tmp_path):
    import shutil

    shutil.copytree(synth_root, tmp_path / "out" / plan.DEMO_DATA_FOLDER)
    settings = settings_for(synth_root, tmp_path, data_root="demo")
    assert settings.data_root == tmp_path / "out" / plan.DEMO_DATA_FOLDER
    assert plan.usable_datasets(settings) == ["kadid"]


def test_family_experiments_follow_the_data_and_the_list(synth_root, tmp_path, capsys):
    every = settings_for(synth_root, tmp_path)
    assert plan.family_experiments("padding", every) == [1, 4, 22]
    assert plan.family_experiments("fixed_patch", every) == [7, 10, 13, 16, 25, 28]
    assert plan.family_experiments("full", every) == [19, 31]
    assert "skipped: koniq, agiqa" in capsys.readouterr().out
    chosen = settings_for(synth_root, tmp_path, experiments=[4, 10])
    assert plan.family_experiments("padding", chosen) == [4]
    assert plan.family_experiments("full", chosen) == []
    with pytest.raises(ReproduceError, match="need koniq, which cannot be loaded"):
        plan.family_experiments("padding", settings_for(synth_root, tmp_path, experiments=[4, 5]))
    with pytest.raises(ReproduceError, match="unknown prompt family 'patch'"):
        plan.family_experiments("patch", every)


def test_experiment_config_applies_the_notebook_parameters(synth_root, tmp_path):
    config = plan.experiment_config(22, settings_for(synth_root, tmp_path, lr=5.0, epochs=2))
    assert config.number == 22 and config.prompt.mode == "mul" and config.prompt.size == 30
    assert config.model.name_or_path == "tiny-random" and config.dataset.root == str(synth_root)
    assert (config.train.epochs, config.train.lr, config.train.limit, config.train.batch_size) == (2, 5.0, 16, 8)
    paper = plan.experiment_config(22, settings_for(synth_root, tmp_path, epochs=None, batch_size=None))
    assert (paper.train.epochs, paper.train.batch_size, paper.train.lr) == (25, 32, 60.0)  # the paper's own


def test_mul_residual_variant_is_the_experiment_in_that_mode_with_its_own_run_folder(synth_root, tmp_path):
    settings = settings_for(synth_root, tmp_path, mul_residual=[22, 31], lr=5.0)
    numbers = plan.family_experiments("padding", settings)
    assert plan.mul_residual_variants(numbers, settings) == [22]  # 31 is trained by the full-overlay notebook
    assert plan.mul_residual_variants(plan.family_experiments("full", settings), settings) == [31]
    assert plan.mul_residual_variants([4], settings) == []  # a variant follows its experiment
    configs = plan.experiment_configs(numbers, settings, [22])
    assert [c.name for c in configs] == ["exp_01_kadid_padding_10px_add", "exp_04_kadid_padding_30px_add",
                                         "exp_22_kadid_padding_30px_mul", "exp_22_kadid_padding_30px_mul_residual"]
    paper, fix = configs[2], configs[3]
    assert (fix.number, fix.prompt.mode, paper.prompt.mode) == (22, "mul_residual", "mul")
    assert fix.to_dict() == {**paper.to_dict(), "name": fix.name, "prompt": {**paper.to_dict()["prompt"],
                                                                             "mode": "mul_residual"}}
    assert fix.train.lr == 5.0 and fix.model.name_or_path == "tiny-random"  # the notebook parameters apply
    assert plan.experiment_configs([22], settings) == [paper]  # no variant unless asked for
    with pytest.raises(ReproduceError, match=r"mul_residual = \[25, 10\]: experiment 10 is add, not mul"):
        settings_for(synth_root, tmp_path, mul_residual=[25, 10])


def test_a_finished_run_with_other_settings_is_refused(synth_root, tmp_path):
    settings = settings_for(synth_root, tmp_path)
    config = plan.experiment_config(4, settings)
    resolved, _ = resolve_for_model(config, 224, "cpu")
    run = tmp_path / "run"
    run.mkdir()
    provenance.write_record(run, "training", [])
    write_config(run, resolved)
    write_state(run, RunState(config_hash=resolved.hash(), epoch=1, best_epoch=1, finished=True))
    reproduce.check_finished_run(config, run)  # same settings: reused
    other = plan.experiment_config(4, settings_for(synth_root, tmp_path, epochs=2, limit=32))
    with pytest.raises(reproduce.RunSettingsError) as error:
        reproduce.check_finished_run(other, run)
    message = str(error.value)
    assert f"{run}: this experiment was already trained there (finished) with other settings" in message
    assert "epochs = 1 there, 2 in this notebook; limit = 16 there, 32 in this notebook" in message
    assert "to reuse it, set epochs = 1, limit = 16 in the parameters cell" in message
    assert "set out_dir to another folder" in message and "--" not in message  # notebook words, no CLI flags
    with pytest.raises(reproduce.RunSettingsError) as error:  # vpkit sweep (and reproduce's notebooks): options
        reproduce.check_finished_run(other, run, plan.COMMAND_LINE)
    message = str(error.value)
    assert "--epochs 1 there, 2 now; --limit 16 there, 32 now" in message
    assert "to reuse it, give --epochs 1 --limit 16; " in message and "give another --out" in message
    assert "parameters cell" not in message
    reproduce.check_finished_run(paper_config(1), tmp_path / "no-run")  # nothing there: nothing to check


def test_a_stopped_run_or_a_setting_without_a_parameter_is_named_too(synth_root, tmp_path):
    settings = settings_for(synth_root, tmp_path)
    config = plan.experiment_config(4, settings)
    recorded, _ = resolve_for_model(config.with_overrides({"prompt": {"delta": 0.5}}, source="test"), 224, "cpu")
    run = tmp_path / "run"
    run.mkdir()
    provenance.write_record(run, "training", [])
    write_config(run, recorded)
    write_state(run, RunState(config_hash=recorded.hash(), epoch=1, best_epoch=1, finished=False))
    with pytest.raises(reproduce.RunSettingsError) as error:
        reproduce.check_finished_run(config, run)
    message = str(error.value)
    assert "(stopped part-way) with other settings" in message and "prompt.delta 0.5 there, 1.0 now" in message
    assert "to reuse it" not in message  # no parameter sets prompt.delta: only another out_dir helps


# ----------------------------------------------------------------------------- zero-shot score types


def test_score_type_metrics_cover_every_score_type():
    from vpkit.scoring import SCORE_TYPES, all_score_words

    words = tuple(w for w in all_score_words() if w != "excellent")  # as if 'excellent' were not one token
    mos = np.linspace(1, 5, 12)
    logits = torch.zeros(12, len(words))
    logits[:, words.index("good")] = torch.tensor(mos)  # more "good" for better images
    logits[:, words.index("poor")] = -torch.tensor(mos)
    frame = reproduce._score_type_metrics(logits, mos, words).set_index("score_type")
    assert list(frame.index) == [*SCORE_TYPES, "qalign"]
    assert frame.loc["good_vs_poor", "srcc"] == pytest.approx(1.0)
    assert frame.loc["good+fine_vs_poor+bad", "srcc"] == pytest.approx(1.0)
    assert np.isnan(frame.loc["excellent_vs_bad", "srcc"]) and "excellent" in frame.loc["excellent_vs_bad", "note"]
    assert "excellent" in frame.loc["qalign", "note"]
    # 'fine' and 'bad' logits are equal for every image: a constant score has no correlation, and says why
    assert np.isnan(frame.loc["fine_vs_bad", "srcc"]) and "constant" in frame.loc["fine_vs_bad", "note"]


def test_zero_shot_scores_are_kept_and_shown_again_until_a_setting_changes(synth_root, tmp_path, capsys, monkeypatch):
    import vpkit.models

    settings = settings_for(synth_root, tmp_path)
    first = reproduce.zero_shot_scores(settings, ["kadid"], progress=False)
    kept = tmp_path / "out" / reproduce.ZERO_SHOT_FOLDER / "kadid_test.json"
    assert kept.is_file() and set(first["n_images"]) == {12}
    capsys.readouterr()
    with monkeypatch.context() as patched:  # the same settings: shown from the file, no model loaded
        patched.setattr(vpkit.models, "load_scorer", lambda *args, **kwargs: pytest.fail("scored again"))
        again = reproduce.zero_shot_scores(settings, ["kadid"], progress=False)
    pd.testing.assert_frame_equal(again, first)
    said = capsys.readouterr().out
    assert f"zero-shot scores reused from {kept}" in said and "delete it, or pass recompute=True" in said
    fewer = reproduce.zero_shot_scores(settings_for(synth_root, tmp_path, limit=8), ["kadid"], progress=False)
    assert set(fewer["n_images"]) == {8} and "limit, images differ); scoring again" in capsys.readouterr().out
    fresh = reproduce.zero_shot_scores(settings, ["kadid"], progress=False, recompute=True)
    pd.testing.assert_frame_equal(fresh, first)  # scored again, the same numbers
    assert "reused" not in capsys.readouterr().out


# ----------------------------------------------------------------------------- running notebooks


def test_notebook_selection(tmp_path):
    for name in ("00_data", "01_zero_shot", "05_tables"):
        nbformat.write(nbformat.v4.new_notebook(), tmp_path / f"{name}.ipynb")
    (tmp_path / "scratch.ipynb").write_text("{}")
    assert [p.stem for p in reproduce.notebook_paths(tmp_path)] == ["00_data", "01_zero_shot", "05_tables"]
    assert [p.stem for p in reproduce.notebook_paths(tmp_path, ["05", "00"])] == ["00_data", "05_tables"]
    with pytest.raises(ReproduceError, match="--only 07 matches no notebook"):
        reproduce.notebook_paths(tmp_path, ["07"])
    with pytest.raises(ReproduceError, match="no notebooks"):
        reproduce.notebook_paths(tmp_path / "empty")


def test_a_failing_notebook_is_named_with_its_cell(tmp_path):
    pytest.importorskip("papermill")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell("divisor = 1")
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [nbformat.v4.new_markdown_cell("# fails"), parameters,
                      nbformat.v4.new_code_cell("ratio = 1 / divisor")]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(notebook, folder / "00_fails.ipynb")
    lines = []
    with pytest.raises(ReproduceError) as error:
        reproduce.run_notebooks({"divisor": 0}, tmp_path / "out", folder, echo=lines.append)
    message = str(error.value)
    assert f"{folder / '00_fails.ipynb'} failed in cell 3" in message
    assert "ZeroDivisionError" in message and str(tmp_path / "out" / "notebooks" / "00_fails.ipynb") in message
    executed = nbformat.read(tmp_path / "out" / "notebooks" / "00_fails.ipynb", as_version=4)
    assert any("divisor = 0" in cell.source for cell in executed.cells)  # the injected parameters are kept
    assert lines == ["[1/1] 00_fails.ipynb ..."]


def test_extra_seeds_train_an_experiment_again_beside_its_paper_run(synth_root, tmp_path, capsys):
    settings = settings_for(synth_root, tmp_path, extra_seeds={4: [1, 2]})
    configs = plan.experiment_configs([1, 4], settings)
    assert [c.name for c in configs] == ["exp_01_kadid_padding_10px_add", "exp_04_kadid_padding_30px_add",
                                         "exp_04_kadid_padding_30px_add_seed1", "exp_04_kadid_padding_30px_add_seed2"]
    paper, seed = configs[1], configs[2]
    assert seed.to_dict() == {**paper.to_dict(), "name": seed.name, "train": {**paper.to_dict()["train"], "seed": 1}}
    assert plan.experiment_configs([1], settings) == configs[:1]  # seeds follow their experiment
    # papermill writes a dict's keys as strings
    assert settings_for(synth_root, tmp_path, extra_seeds={"4": [1]}).extra_seeds == {4: [1]}
    for bad, said in (({40: [1]}, "40 is no experiment"), ({4: []}, "experiment 4 needs a list of distinct seeds"),
                      ({4: [1, 1]}, "needs a list of distinct seeds")):
        with pytest.raises(ReproduceError, match=said):
            settings_for(synth_root, tmp_path, extra_seeds=bad)
    assert reproduce._seed_map("4:1,2;5:3") == {4: [1, 2], 5: [3]} and reproduce._seed_map("none") == {}
    with pytest.raises(ReproduceError, match=r"^--extra-seeds '4-1': give EXPERIMENT:SEED,SEED"):
        reproduce._seed_map("4-1")
