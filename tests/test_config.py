"""The experiment schema: the 33 paper experiments, the shipped YAMLs, paper-style YAML, validation errors."""


import pytest
import yaml
from _messages import raises_one_line

from vpkit import provenance
from vpkit.config import (
    PAPER_EXPERIMENTS,
    ConfigError,
    config_from_dict,
    load_config,
    paper_config,
    resolve_for_model,
    scaled_prompt_size,
)
from vpkit.resources import package_path

CONFIG_DIR = package_path("configs")


def test_shipped_yamls_equal_the_generated_paper_experiments():
    files = sorted(CONFIG_DIR.glob("exp_*.yaml"))
    assert [f.name for f in files] == [f"exp_{n:02d}.yaml" for n in range(1, 34)]
    for number, path in enumerate(files, start=1):
        assert load_config(path) == paper_config(number), path.name
        assert yaml.safe_load(path.read_text()) == paper_config(number).to_dict(), path.name


def test_paper_experiment_numbering_and_hyper_parameters():
    assert len(PAPER_EXPERIMENTS) == 33
    exp4 = paper_config(4)
    assert (exp4.dataset.name, exp4.prompt.type, exp4.prompt.size, exp4.prompt.mode) == (
        "kadid",
        "padding",
        30,
        "add",
    )
    assert (exp4.train.batch_size, exp4.train.epochs, exp4.train.lr) == (32, 25, 60.0)
    assert (exp4.train.momentum, exp4.train.weight_decay, exp4.train.patience, exp4.train.seed) == (
        0.0,
        0.0,
        6,
        42,
    )
    assert exp4.train.amp == "fp16" and exp4.model.score_type == "good+fine_vs_poor+bad"
    assert [paper_config(n).dataset.name for n in (1, 2, 3)] == ["kadid", "koniq", "agiqa"]
    assert paper_config(5).train.batch_size == 4 and paper_config(6).train.epochs == 35
    assert paper_config(7).prompt.is_center and not paper_config(13).prompt.is_center
    assert paper_config(19).prompt.type == "full" and paper_config(19).prompt.size is None
    assert {paper_config(n).prompt.mode for n in range(22, 34)} == {"mul"}
    assert PAPER_EXPERIMENTS[27].paper_name == "SGD_mplug2_exp_28_kadid_patch_topLeft_30px_mul"
    assert load_config("exp_04") == load_config("4") == load_config(4)


def test_a_paper_experiment_in_another_mode_is_named_for_that_mode():
    fix = paper_config(31, "mul_residual")
    assert fix.name == "exp_31_kadid_full_mul_residual" and fix.number == 31 and fix.prompt.mode == "mul_residual"
    assert fix.to_dict() == {**paper_config(31).to_dict(), "name": fix.name,
                             "prompt": {**paper_config(31).to_dict()["prompt"], "mode": "mul_residual"}}
    assert paper_config(22, None) == paper_config(22)
    with raises_one_line(ConfigError, names=("paper experiment 22", "prompt.mode", "sum", "mul_residual")):
        paper_config(22, "sum")


PAPER_STYLE_YAML = """
experiment_name: "SGD_mplug2_exp_08_koniq_patch_center_10px_add"
model:
  vlm_name: "mplug2"
  visual_prompt:
    type: "fixed_patch"
    args: {size: 10, delta: 1, mode: "add", is_center: true}
quality_score_type: "good+fine_vs_poor+bad"
training:
  output_dir: "out"
  num_train_epochs: 25
  learning_rate: 60
  per_device_train_batch_size: 4
  per_device_eval_batch_size: 32
  optim: "sgd"
  weight_decay: 0
  evaluation_strategy: "epoch"
  save_strategy: "epoch"
  gradient_accumulation_steps: 1
  warmup_steps: 0
  lr_scheduler_type: "constant"
  load_best_model_at_end: true
  metric_for_best_model: "metric"
  greater_is_better: true
  seed: 42
dataset:
  train: {path: "./data", name: "koniq", split: "train"}
  eval: {path: "./data", name: "koniq", split: "val"}
  test: {path: "./data", name: "koniq", split: "test"}
"""


def test_paper_style_yaml_maps_onto_the_same_experiment(tmp_path):
    path = tmp_path / "paper.yaml"
    path.write_text(PAPER_STYLE_YAML)
    loaded = load_config(path)
    expected = paper_config(8)
    assert loaded.dataset.root == "./data"
    loaded.dataset.root = expected.dataset.root
    assert loaded == expected


def test_paper_style_yaml_with_an_unsupported_optimiser_is_an_error(tmp_path):
    path = tmp_path / "paper.yaml"
    path.write_text(PAPER_STYLE_YAML.replace('optim: "sgd"', 'optim: "adamw_torch"'))
    with raises_one_line(ConfigError, names=(path, "training.optim", "adamw_torch")):
        load_config(path)


@pytest.mark.parametrize(
    "section, values, names",
    [
        ("train", {"epoch": 3}, ("train.epoch", "epochs")),
        ("dataset", {"name": "live"}, ("dataset.name", "'live'", "kadid, koniq, agiqa")),
        ("train", {"amp": "fp8"}, ("train.amp", "'fp8'", "none, fp16, bf16")),
        ("train", {"batch_size": 2.5}, ("train.batch_size", "2.5")),
        ("train", {"lr": 0}, ("train.lr", "0.0", "> 0")),
        ("prompt", {"mode": "sub"}, ("prompt.mode", "'sub'", "mul_residual")),
        ("prompt", {"size": 300}, ("prompt.size", "300")),
        ("train", {"checkpointing": "yes"}, ("train.checkpointing", "'yes'", "off, full, selective, mixed")),
        ("train", {"lr": float("nan")}, ("train.lr", "nan")),  # NaN passed lr > 0
        ("prompt", {"delta": float("inf")}, ("prompt.delta", "inf")),
        ("train", {"seed": -1}, ("train.seed", "-1", ">= 0")),
    ],
)
def test_bad_values_name_the_file_the_field_and_what_is_allowed(tmp_path, section, values, names):
    data = paper_config(1).to_dict()
    data[section].update(values)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with raises_one_line(ConfigError, names=(path, *names)):
        load_config(path)


def test_unknown_section_missing_file_and_unknown_number():
    with raises_one_line(ConfigError, names=("x.yaml", "optimizer", "train")):
        config_from_dict({"optimizer": {}}, "x.yaml")
    with raises_one_line(ConfigError, names=("does/not/exist.yaml",)):
        load_config("does/not/exist.yaml")
    with raises_one_line(ConfigError, names=("34",), fix="1..33"):  # the range it has
        load_config(34)


def test_overrides_are_validated():
    config = paper_config(4).with_overrides(
        {"train": {"epochs": 2, "lr": None}, "model": {"name_or_path": "tiny"}}
    )
    assert config.train.epochs == 2 and config.train.lr == 60.0 and config.model.name_or_path == "tiny"
    with raises_one_line(ConfigError, names=("train.epochs", "0", ">= 1")):
        paper_config(4).with_overrides({"train": {"epochs": 0}})


def test_resolving_for_a_224px_cpu_model_scales_the_prompt_and_says_so():
    resolved, notes = resolve_for_model(paper_config(4), image_size=224, device="cpu")
    assert (resolved.prompt.size, resolved.prompt.image_size) == (15, 224)
    assert (resolved.model.dtype, resolved.train.amp) == ("fp32", "none")
    assert any("30 px at 448 px -> 15 px" in note for note in notes)
    again, notes_again = resolve_for_model(resolved, image_size=224, device="cpu")
    assert again == resolved and notes_again == []
    assert scaled_prompt_size(10, 448, 224) == 5 and scaled_prompt_size(30, 448, 336) == 23
    on_gpu, _ = resolve_for_model(paper_config(4), image_size=448, device="cuda")
    assert (on_gpu.prompt.size, on_gpu.model.dtype, on_gpu.train.amp) == (30, "fp16", "fp16")


def test_hash_ignores_where_a_run_executes_but_not_what_it_computes():
    base = paper_config(4)
    assert base.hash() == base.with_overrides({"train": {"device": "cuda:1", "num_workers": 8}}).hash()
    lean = {"train": {"checkpointing": "selective", "compile": True, "compile_cache_dir": "/shared/cc"}}
    assert base.hash() == base.with_overrides(lean).hash() == "5b8733c4a538adb8"  # the hash before these existed
    assert base.hash() != base.with_overrides({"train": {"lr": 30.0}}).hash()


@pytest.mark.parametrize("written, mode", [("false", "off"), ("off", "off"), ("'off'", "off"),
                                           ("full", "full"), ("selective", "selective"), ("mixed", "mixed")])
def test_checkpointing_reads_its_modes(tmp_path, written, mode):
    """YAML reads a bare `off` as false, which means 'off' too."""
    text = paper_config(4).to_yaml()
    assert "  checkpointing: 'off'\n" in text  # written quoted, so that it reads back as the mode name
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("  checkpointing: 'off'\n", f"  checkpointing: {written}\n"))
    config = load_config(path)
    assert config.train.checkpointing == mode
    assert config.hash() == paper_config(4).hash()  # how a run executes, not what it computes


@pytest.mark.parametrize("written", ["true", "on"])
def test_checkpointing_on_is_not_a_mode(tmp_path, written):
    path = tmp_path / "c.yaml"
    path.write_text(paper_config(4).to_yaml().replace("  checkpointing: 'off'\n", f"  checkpointing: {written}\n"))
    with raises_one_line(ConfigError, names=(path, "train.checkpointing", "off, full, selective, mixed")):
        load_config(path)


def test_a_key_given_twice_in_any_yaml_vpkit_reads_is_refused(tmp_path):
    from vpkit.reproduce import ReproduceError, load_profile
    from vpkit.runs import read_config

    text = paper_config(4).to_yaml().replace("  lr: 60.0\n", "  lr: 60.0\n  lr: 6.0\n")  # yaml keeps the last
    assert yaml.safe_load(text)["train"]["lr"] == 6.0
    second = f"line {text.splitlines().index('  lr: 6.0') + 1}"
    config_file = tmp_path / "twice.yaml"
    config_file.write_text(text)
    with raises_one_line(ConfigError, names=(config_file, second, "'lr'")):
        load_config(config_file)
    run = tmp_path / "run"
    run.mkdir()
    provenance.write_record(run, "training", [])
    (run / "config.yaml").write_text(text)
    with raises_one_line(ConfigError, names=(run / "config.yaml", second, "'lr'")):
        read_config(run)
    profile = tmp_path / "profile.yaml"
    profile.write_text("description: x\ndescription: y\n")
    with raises_one_line(ReproduceError, names=(profile, "line 2", "'description'")):
        load_profile(profile)


def test_damaged_yaml_names_the_file_and_the_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(paper_config(4).to_yaml() + "  - : [\n")
    lines = len(path.read_text().splitlines())
    with raises_one_line(ConfigError, names=(path, f"line {lines}, column")):
        load_config(path)
    path.write_bytes(b"\xff\xfe binary")
    with raises_one_line(ConfigError, names=(path,)):
        load_config(path)


def test_each_paper_experiment_is_named_drawn_and_labelled_from_its_one_shape():
    from vpkit.config import PAPER_EXPERIMENTS, paper_config
    from vpkit.prompters import prompter_from_config
    from vpkit.vocabulary import SHAPES, shape_of

    assert {exp.position for exp in PAPER_EXPERIMENTS} == set(SHAPES)
    for exp in PAPER_EXPERIMENTS:
        shape, prompt = SHAPES[exp.position], paper_config(exp.number).prompt
        assert shape_of(prompt.type, prompt.is_center) is shape  # the config draws the shape it is named after
        assert f"_{shape.name_part}" in exp.name and shape.paper_name_part.format(size=exp.size) in exp.paper_name
        assert prompter_from_config(prompt).describe().startswith(shape.label)
