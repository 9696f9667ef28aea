"""Activation checkpointing modes of the frozen model: the prompt's gradient is the same in each, and selective
checkpointing recomputes only the cheap ops (no matmul runs twice), full checkpointing whole layers."""
from __future__ import annotations

from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from vpkit.config import CHECKPOINTING_MODES
from vpkit.evaluate import PromptedScorer
from vpkit.models import load_scorer
from vpkit.models.checkpointing import CHECKPOINTING_MODES as MODEL_MODES
from vpkit.prompters import build_prompter


class OpCounter(TorchDispatchMode):
    """Counts the aten ops that run while it is active."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("tiny-random")


def prompt_step(scorer, mode: str) -> tuple[torch.Tensor, torch.Tensor, Counter]:
    """(loss, prompt gradient, ops run in backward) of one training step in checkpointing `mode`."""
    scorer.model.set_gradient_checkpointing(mode)
    prompter = build_prompter("padding", size=4, image_size=scorer.image_size,
                              generator=torch.Generator().manual_seed(0))
    model = PromptedScorer(scorer, prompter)
    images = torch.rand(3, 3, scorer.image_size, scorer.image_size, generator=torch.Generator().manual_seed(1))
    loss = F.mse_loss(model(images), torch.tensor([0.2, 0.5, 0.9]))
    with OpCounter() as backward_ops:
        loss.backward()
    scorer.model.set_gradient_checkpointing("off")
    return loss.detach(), next(prompter.parameters()).grad, backward_ops.counts


def test_every_mode_gives_the_same_loss_and_prompt_gradient(scorer):
    plain_loss, plain_grad, _ = prompt_step(scorer, "off")
    assert plain_grad.abs().sum() > 0
    for mode in ("full", "selective", "mixed"):
        loss, grad, _ = prompt_step(scorer, mode)
        assert torch.allclose(loss, plain_loss, rtol=0, atol=1e-7), mode
        assert torch.allclose(grad, plain_grad, rtol=1e-5, atol=1e-9), mode


MATMULS = ("mm", "addmm", "bmm")


def matmuls(ops: Counter) -> int:
    return sum(ops[op] for op in MATMULS)


def test_selective_recomputes_the_cheap_ops_and_no_matmul(scorer):
    """What each mode trades is the work backward runs, so the count of ops is the behaviour here; only matmuls
    (the expensive ops) are told apart, which kernels run the rest is torch's business. Backward through frozen
    weights runs one matmul per forward matmul (the input gradient). Full checkpointing runs the forward's
    matmuls again before that; selective keeps their outputs and reruns only cheaper ops (norms, activations);
    without checkpointing nothing of the forward runs again."""
    _, _, off = prompt_step(scorer, "off")
    _, _, full = prompt_step(scorer, "full")
    _, _, selective = prompt_step(scorer, "selective")
    assert 0 < matmuls(off) < matmuls(full)
    assert matmuls(selective) == matmuls(off)  # no matmul runs twice
    assert sum(off.values()) < sum(selective.values()) < sum(full.values())  # some of the forward reruns


def test_mixed_recomputes_the_vision_side_whole_and_the_language_model_selectively(scorer):
    """Whole layers of the vision side rerun (their matmuls too), the language model's only cheap ops: more
    matmuls than selective or none, fewer than full."""
    _, _, off = prompt_step(scorer, "off")
    _, _, full = prompt_step(scorer, "full")
    _, _, mixed = prompt_step(scorer, "mixed")
    assert matmuls(off) < matmuls(mixed) < matmuls(full)


def test_the_config_and_the_models_name_the_same_modes():
    assert CHECKPOINTING_MODES == MODEL_MODES
