"""The `structural` pretraining recipe: a whitened, fixed DCT patch embedding, and a short run of the recipe."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from vpkit.data.synth import PRETRAIN_DISTORTIONS, apply_distortion, reference_images
from vpkit.models.tiny import build_tiny_model
from vpkit.models.tiny_pretrain import (
    RECIPES,
    PretrainSettings,
    dct_filter_bank,
    model_input,
    patch_responses,
    pretrain,
    whitened_patch_embedding,
)


def test_dct_bank_is_orthonormal_per_channel_and_spans_the_spectrum():
    bank = dct_filter_bank(patch=8, luma=12, chroma=4)
    assert bank.shape == (16, 3, 8, 8)
    flat = bank.flatten(1)
    gram = flat @ flat.T
    # different basis images are orthogonal (same frequency on another colour axis included)
    assert torch.allclose(gram - torch.diag(torch.diag(gram)), torch.zeros_like(gram), atol=1e-6)
    luma = bank[:12]
    assert torch.allclose(luma[:, 0], luma[:, 1]) and torch.allclose(luma[:, 1], luma[:, 2])
    assert torch.allclose(luma[0, 0], torch.full((8, 8), 1 / 8 / 3))  # the mean (DC) ...
    assert luma[-1, 0].diff(dim=0).abs().min() > 0.01  # ... up to the highest frequency, which alternates
    chroma = bank[12:]
    assert torch.allclose(chroma.sum(dim=1), torch.zeros(4, 8, 8), atol=1e-7)  # no grey in the colour filters


def test_whitening_equalises_filter_responses_that_differ_by_orders_of_magnitude():
    model, _ = build_tiny_model(seed=0)
    refs = reference_images(6, (288, 224), seed=3, photos=False)
    rng = np.random.default_rng(0)
    images = [r.image for r in refs] + [apply_distortion(name, refs[0].image, 3, rng) for name in PRETRAIN_DISTORTIONS]
    pixels = (model_input(images, 224) - 0.45) / 0.25
    weights = whitened_patch_embedding(model, pixels)
    raw = patch_responses(pixels, dct_filter_bank(weights.shape[-1], weights.shape[0] - 8, 8)).std(dim=0)
    assert raw.max() / raw.min() > 30  # why it is needed: low frequencies dwarf the high ones
    whitened = patch_responses(pixels, weights).std(dim=0)
    assert torch.allclose(whitened, torch.ones_like(whitened), atol=1e-3)


def test_unknown_recipe_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown pretraining recipe 'nope'"):
        pretrain(replace(PretrainSettings(), recipe="nope"), tmp_path)


def test_structural_recipe_trains_everything_but_its_fixed_filters(tmp_path):
    assert RECIPES["structural"].whitened_filters and not RECIPES["colour"].whitened_filters
    settings = replace(PretrainSettings(), recipe="structural", n_refs=10, eval_n_refs=3, epochs=1, batch_size=8,
                       warmup_steps=2, whitening_images=16)
    before, _ = build_tiny_model(seed=settings.seed, **dict(RECIPES["structural"].vision_sizes))
    scorer, report = pretrain(settings, tmp_path, log=lambda line: None)
    after = dict(scorer.model.named_parameters())
    embed = "model.vision_model.embeddings.patch_embed.weight"
    bank = after[embed].flatten(1)
    assert not torch.allclose(after[embed], before.state_dict()[embed])  # replaced by the filter bank ...
    assert torch.allclose((bank @ bank.T).fill_diagonal_(0), torch.zeros(bank.shape[0], bank.shape[0]),
                          atol=1e-4)  # ... which stays an orthogonal bank: training did not touch it
    changed = [n for n, p in before.named_parameters() if n != embed and not torch.equal(p, after[n])]
    assert len(changed) > 0.9 * (len(after) - 1)
    assert report["settings"]["recipe"] == "structural"
    assert scorer.model.config.vision.hidden_size == 128 and len(scorer.model.model.vision_model.encoder.layers) == 4
    assert set(report["unseen_zero_shot"]) >= {"srcc", "plcc"}
    assert report["device"] == "cpu" and scorer.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pretraining_runs_on_the_gpu_and_hands_back_a_cpu_model(tmp_path):
    settings = replace(PretrainSettings(), n_refs=10, eval_n_refs=3, epochs=1, batch_size=8, warmup_steps=2,
                       whitening_images=16)
    scorer, report = pretrain(settings, tmp_path, log=lambda line: None, device="cuda")
    assert report["device"] == torch.cuda.get_device_name() and scorer.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in scorer.model.parameters())
    assert np.isfinite(report["history"][-1]["loss"]) and set(report["seen_test"]) >= {"srcc", "plcc"}
