"""The training loop's host work: the loss is read from the device every few steps, not every step, a
non-finite loss still stops an fp32 run, and the time spent waiting for data is measured.

The "model" is linear in a two-weight prompt (as in test_train_clipping), so a step takes microseconds.
"""
import collections
import math
import time

import pytest
import torch
from _linear_prompt import LinearPrompt, LinearScore
from _messages import raises_one_line
from torch.utils._python_dispatch import TorchDispatchMode

import vpkit.train as vpkit_train
from vpkit.train import train_one_epoch


def batches(n, nan_at=None):
    image = torch.tensor([255, 51, 0], dtype=torch.uint8).view(1, 3, 1, 1)
    labels = [torch.full((1,), float("nan") if step == nan_at else 1.0) for step in range(1, n + 1)]
    return [{"image": image, "label": label} for label in labels]


class CountingLoader:
    """A list of batches that counts how many were taken (and can make each take a while)."""

    def __init__(self, items, delay=0.0):
        self.items, self.delay, self.taken = items, delay, 0

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        for item in self.items:
            time.sleep(self.delay)
            self.taken += 1
            yield item


def one_epoch(loader, scaler=None, lr=0.01):
    prompter = LinearPrompt()
    optimizer = torch.optim.SGD(prompter.parameters(), lr=lr)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
    return train_one_epoch(LinearScore(prompter), prompter, optimizer, scaler, loader, "cpu", progress=False)


class SyncCounter(TorchDispatchMode):
    """Counts aten._local_scalar_dense: every .item() / float(tensor), a host-device sync on a GPU."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


@pytest.fixture
def reads_by_steps_only(monkeypatch):
    monkeypatch.setattr(vpkit_train, "LOSS_READ_SECONDS", float("inf"))  # a slow machine must not add reads


def test_the_loss_is_read_every_few_steps_not_every_step(reads_by_steps_only):
    """The count of aten._local_scalar_dense is the behaviour here: each is a host-device sync on a GPU, which
    stalls the step queue, so the loop must add one read per LOSS_READ_STEPS steps, not one per step."""
    syncs = []
    for n in (1, vpkit_train.LOSS_READ_STEPS + 5):
        with SyncCounter() as counter:
            _, n_images, _ = one_epoch(batches(n))
        syncs.append(counter.counts["aten._local_scalar_dense.default"])
        assert n_images == n
    assert syncs[1] - syncs[0] == 1  # 29 more steps, one more read (at step 25)


def test_the_epoch_loss_is_the_mean_of_the_step_losses():
    # w = 0 at the first step: its loss is exactly 1; later steps shrink it; the mean weights each image once
    loss, n_images, _ = one_epoch(batches(3), lr=0.0)
    assert (loss, n_images) == (1.0, 3)


def test_a_non_finite_loss_stops_an_fp32_run_at_the_next_read(reads_by_steps_only):
    loader = CountingLoader(batches(vpkit_train.LOSS_READ_STEPS + 10, nan_at=2))
    with raises_one_line(FloatingPointError, names=("nan", "1..25", "train.lr")):
        one_epoch(loader)
    assert loader.taken == vpkit_train.LOSS_READ_STEPS  # stopped at the first read, not at the end of the epoch


def test_a_non_finite_loss_in_the_last_steps_is_caught_at_the_end_of_the_epoch():
    with raises_one_line(FloatingPointError, names=("nan", "..3", "train.lr")):  # the last steps named
        one_epoch(batches(3, nan_at=3))


def test_under_the_fp16_scaler_a_non_finite_step_is_skipped_not_fatal():
    loss, n_images, _ = one_epoch(batches(3, nan_at=2), scaler=torch.amp.GradScaler("cpu"))
    assert n_images == 3 and math.isnan(loss)  # the epoch's mean is NaN, as before; the run goes on


def test_the_time_spent_waiting_for_data_is_measured():
    """The loader sleeps 4 x 0.05 s: at least that is measured. No upper bound on the wall clock (a loaded
    machine stretches every step); a loader that does not wait measures less than one that does."""
    _, _, slow = one_epoch(CountingLoader(batches(4), delay=0.05))
    assert slow["train_data_wait_s"] >= 0.2
    _, _, quick = one_epoch(batches(4))
    assert 0.0 <= quick["train_data_wait_s"] < slow["train_data_wait_s"]
