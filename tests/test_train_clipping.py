"""Gradient clipping in train_one_epoch, checked against steps computed by hand.

The "model" is linear in a two-weight prompt, score = w0 * red + w1 * green, so that the gradient of the MSE is
known in closed form: at w = 0 and label 1, d/dw (w.x - 1)^2 = -2 x.
"""
import math

import pytest
import torch
from _linear_prompt import LinearPrompt, LinearScore
from _messages import raises_one_line

from vpkit.train import train_one_epoch

RED, GREEN = 1.0, 0.2  # pixel values 255 and 51 of 255
LR = 0.5
GRAD = (-2 * RED, -2 * GREEN)  # the gradient at w = 0
NORM = math.hypot(*GRAD)  # 2.0396...


def batches(n):
    image = torch.tensor([255, 51, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    return [{"image": image, "label": torch.ones(1)} for _ in range(n)]


def one_epoch(max_grad_norm, n_batches=1, grad_accum=1, scaler=None):
    prompter = LinearPrompt()
    optimizer = torch.optim.SGD(prompter.parameters(), lr=LR)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
    _, _, norms = train_one_epoch(
        LinearScore(prompter), prompter, optimizer, scaler, batches(n_batches), "cpu", "none", grad_accum,
        progress=False, max_grad_norm=max_grad_norm,
    )
    return prompter.w.detach().tolist(), norms


def unclipped_step():
    return [-LR * g for g in GRAD]  # (1.0, 0.2)


def test_a_gradient_above_the_limit_is_scaled_to_it():
    w, norms = one_epoch(max_grad_norm=1.0)
    coefficient = 1.0 / (NORM + 1e-6)  # torch's clip_grad_norm_ rule
    assert w == pytest.approx([-LR * g * coefficient for g in GRAD], rel=1e-6)
    assert math.hypot(*w) == pytest.approx(LR * 1.0, rel=1e-5)  # the step is lr x the limit
    assert w != pytest.approx(unclipped_step(), rel=1e-3)
    assert norms["grad_norm_mean"] == pytest.approx(NORM, rel=1e-6)  # recorded before clipping
    assert norms["grad_norm_max"] == pytest.approx(NORM, rel=1e-6)
    assert norms["grad_clipped_fraction"] == 1.0


def test_a_gradient_below_the_limit_is_left_alone():
    w, norms = one_epoch(max_grad_norm=10.0)
    assert w == pytest.approx(unclipped_step(), rel=1e-6)
    assert norms["grad_norm_mean"] == pytest.approx(NORM, rel=1e-6)
    assert norms["grad_clipped_fraction"] == 0.0


def test_no_clipping_still_records_the_norm():
    w, norms = one_epoch(max_grad_norm=None)
    assert w == pytest.approx(unclipped_step(), rel=1e-6)
    assert norms["grad_norm_max"] == pytest.approx(NORM, rel=1e-6)
    assert norms["grad_clipped_fraction"] is None


def test_clipping_acts_once_on_the_accumulated_gradient():
    # two micro-batches of loss/2 each add up to GRAD: one clip of norm NORM -> a step of length lr x 1.
    # Clipping each half (norm NORM/2 > 1) before adding them would give a step of length lr x 2.
    w, norms = one_epoch(max_grad_norm=1.0, n_batches=2, grad_accum=2)
    assert math.hypot(*w) == pytest.approx(LR * 1.0, rel=1e-5)
    assert norms["grad_norm_mean"] == pytest.approx(NORM, rel=1e-6)  # one optimiser step, one norm


def test_the_norm_is_measured_after_unscaling():
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    w, norms = one_epoch(max_grad_norm=1.0, scaler=scaler)
    assert math.hypot(*w) == pytest.approx(LR * 1.0, rel=1e-5)
    assert norms["grad_norm_mean"] == pytest.approx(NORM, rel=1e-6)


def test_an_overflowing_step_is_still_skipped():
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)  # the scaled gradient 2 x 3e38 is inf in fp32
    w, norms = one_epoch(max_grad_norm=1.0, scaler=scaler)
    assert w == [0.0, 0.0]
    assert scaler.get_scale() < 3e38  # the scaler saw the inf and backed off
    assert math.isnan(norms["grad_norm_mean"])  # no finite norm to report


# ----------------------------------------------------------------------------- the config field


def test_the_paper_experiments_clip_at_the_trainer_default():
    from vpkit.config import PAPER_EXPERIMENTS, paper_config

    assert {paper_config(exp.number).train.max_grad_norm for exp in PAPER_EXPERIMENTS} == {1.0}


@pytest.mark.parametrize("value, expected", [(None, 1.0), (0.5, 0.5), (0, None)])
def test_paper_style_yaml_loads_with_the_trainers_clipping(tmp_path, value, expected):
    from test_config import PAPER_STYLE_YAML

    from vpkit.config import load_config

    text = PAPER_STYLE_YAML
    if value is not None:  # the Trainer's max_grad_norm: 0 turns clipping off
        text = text.replace("  seed: 42\n", f"  seed: 42\n  max_grad_norm: {value}\n")
    path = tmp_path / "paper.yaml"
    path.write_text(text)
    assert load_config(path).train.max_grad_norm == expected


@pytest.mark.parametrize(
    "value, given",
    [(0, "0.0"), (-1, "-1.0"), (float("inf"), "inf"), ("big", "'big'")],
)
def test_bad_max_grad_norm_is_one_clear_error(tmp_path, value, given):
    import yaml

    from vpkit.config import ConfigError, load_config, paper_config

    data = paper_config(4).to_dict()
    data["train"]["max_grad_norm"] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with raises_one_line(ConfigError, names=(path, "train.max_grad_norm", given)):
        load_config(path)
    data["train"]["max_grad_norm"] = None  # null: clipping off
    path.write_text(yaml.safe_dump(data))
    assert load_config(path).train.max_grad_norm is None


def test_a_run_clips_by_default_and_records_the_norms(tmp_path, data_root):
    from vpkit.config import paper_config
    from vpkit.runs import read_metrics, read_run
    from vpkit.train import train

    config = paper_config(4).with_overrides(
        {
            "model": {"name_or_path": "tiny-random"},
            "dataset": {"root": str(data_root)},
            "train": {"epochs": 1, "batch_size": 4, "limit": 4, "num_workers": 0},
        }
    )
    train(config, tmp_path / "run", progress=False)
    assert read_run(tmp_path / "run").config.train.max_grad_norm == 1.0
    (row,) = read_metrics(tmp_path / "run")
    assert row["grad_norm_mean"] > 0 and row["grad_norm_max"] >= row["grad_norm_mean"]
    assert row["grad_clipped_fraction"] in (0.0, 1.0)  # one optimiser step
