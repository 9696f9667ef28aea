"""vpkit.device: the device a run asks for, autocast, and loader batches turned into model input."""

import pytest
import torch
from _messages import raises_one_line

from vpkit.device import autocast, gpu_index, resolve_device, to_model_input


def test_auto_picks_cuda_only_where_there_is_one():
    assert resolve_device("auto") == resolve_device(None) == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_it_names_the_fix():
    with raises_one_line(RuntimeError, names=("'cuda:1'", "CUDA"), fix="--device cpu"):
        resolve_device("cuda:1")


def test_gpu_index_reads_the_name_without_asking_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a login node: nothing is resolved here
    assert (gpu_index("cuda"), gpu_index("cuda:3"), gpu_index("cpu"), gpu_index("auto")) == (0, 3, None, None)


def test_autocast_none_keeps_fp32_and_bf16_computes_in_bf16():
    a, b = torch.rand(4, 4), torch.rand(4, 4)
    with autocast("cpu", "none"):
        assert (a @ b).dtype == torch.float32
    with autocast("cpu", "bf16"):
        assert (a @ b).dtype == torch.bfloat16


def test_uint8_batches_become_floats_in_0_1():
    images = torch.tensor([[0, 51, 255]], dtype=torch.uint8)
    out = to_model_input(images, "cpu")
    assert out.dtype == torch.float32 and torch.equal(out, torch.tensor([[0.0, 0.2, 1.0]]))


@pytest.mark.parametrize("name", ["tpu", "xpu", "cuda:x", "CPU", "cuda:"])
def test_a_device_vpkit_does_not_run_on_names_the_option_and_what_is_accepted(name):
    with raises_one_line(ValueError, names=(f"--device '{name}'", "auto, cpu, cuda or cuda:N")):
        resolve_device(name)


def test_train_device_is_checked_with_the_config(capsys):
    """`vpkit train --device tpu` stops with vpkit's line (option, field, what is accepted), not torch's list."""
    from vpkit.cli import main
    from vpkit.config import ConfigError, config_from_dict

    with raises_one_line(ConfigError, names=("x.yaml", "train.device", "--device", "'tpu'")):
        config_from_dict({"train": {"device": "tpu"}}, "x.yaml")
    assert config_from_dict({"train": {"device": "cuda:1"}}).train.device == "cuda:1"
    assert main(["train", "4", "--device", "tpu", "--out", "never-made"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == ("vpkit train: error: command line: train.device (--device) = 'tpu' is not a device vpkit "
                     "runs on; use auto, cpu, cuda or cuda:N")


def test_half_precision_is_used_on_cuda_only_and_bf16_is_kept():
    from vpkit.device import amp_on, model_dtype_on

    assert [model_dtype_on(device, "fp16") for device in ("cpu", "mps", "cuda", "cuda:1")] == ["fp32", "fp32", "fp16", "fp16"]
    assert [amp_on(device, "fp16") for device in ("cpu", "cuda:0")] == ["none", "fp16"]
    assert model_dtype_on("cpu", "bf16") == "bf16" and amp_on("cpu", "bf16") == "bf16"
    assert model_dtype_on("cpu", "fp32") == "fp32" and amp_on("cpu", "none") == "none"


def test_evaluation_loads_the_model_in_the_precision_training_would_use_here():
    from vpkit.evaluate import load_scorer_for

    assert load_scorer_for(None, "cpu", model="tiny-random", dtype="fp16").dtype == torch.float32
    assert load_scorer_for(None, "cpu", model="tiny-random", dtype="bf16").dtype == torch.bfloat16
