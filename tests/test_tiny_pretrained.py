"""The shipped `tiny` weights: they load, they reproduce their recorded scores, and they know something."""
import json

import pytest
import torch

from vpkit.models import TINY_ASSET_DIR, load_scorer
from vpkit.models.tiny_pretrain import LEVEL_CENTRES, PretrainingLoss, fixed_check_images, level_targets

RECORDED = TINY_ASSET_DIR / "recorded_scores.json"


@pytest.fixture(scope="module")
def tiny():
    return load_scorer("tiny")


def test_shipped_folder_is_complete():
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "recorded_scores.json",
                 "pretraining.json"):
        assert (TINY_ASSET_DIR / name).is_file(), f"{name} missing from {TINY_ASSET_DIR}"
    assert (TINY_ASSET_DIR / "model.safetensors").stat().st_size < 8 * 2**20


def test_shipped_weights_reproduce_recorded_scores(tiny):
    """A change to the architecture or the loading code that alters what these weights compute fails here."""
    recorded = json.loads(RECORDED.read_text())
    assert tiny.score_type == recorded["score_type"] and tiny.normalisation == recorded["normalisation"]
    with torch.no_grad():
        scores = tiny(fixed_check_images(tiny.image_size))
    assert torch.allclose(scores, torch.tensor(recorded["scores"]), atol=recorded["tolerance"], rtol=0)


def test_pretrained_weights_rank_what_they_were_taught(tiny):
    """The pristine image scores above its strongly darkened, desaturated and brightened versions (types seen in
    pretraining); the random preset gives other scores."""
    with torch.no_grad():
        scores = tiny(fixed_check_images(tiny.image_size))
    assert (scores[0] > scores[1:]).all()
    assert not torch.allclose(scores, load_scorer("tiny-random")(fixed_check_images(tiny.image_size)))


def test_level_targets_are_distributions_peaked_at_the_label():
    labels = torch.tensor([0.0, 0.5, 1.0])
    targets = level_targets(labels, torch.tensor(LEVEL_CENTRES))
    assert torch.allclose(targets.sum(dim=1), torch.ones(3))
    assert targets.argmax(dim=1).tolist() == [4, 2, 0]


def test_pretraining_loss_prefers_the_right_answer():
    words = ("good", "bad", "poor", "fine", "high", "low", "excellent", "fair")
    loss = PretrainingLoss(words, level_weight=0.3)
    says_good = torch.tensor([[4.0, -4.0, -4.0, 4.0, 4.0, -4.0, 4.0, 0.0]])
    says_bad = -says_good
    high_quality = torch.tensor([0.95])
    assert loss(says_good, high_quality) < loss(says_bad, high_quality)
