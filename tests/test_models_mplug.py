"""MPLUGOwl2ForCausalLM behaviour beyond the golden vectors: layouts, routing, checkpointing, dtypes."""
import dataclasses

import pytest
import torch
from _messages import raises_one_line

from vpkit.models import IMAGE_TOKEN_INDEX as IMG
from vpkit.models import MPLUGOwl2ForCausalLM, tiny_config


@pytest.fixture(scope="module")
def model():
    return MPLUGOwl2ForCausalLM.random_init(tiny_config(40, image_size=56), seed=0)


def pixels(n, size=56, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_random_init_is_deterministic_per_seed():
    config = tiny_config(40, image_size=56)
    first, again, other = (MPLUGOwl2ForCausalLM.random_init(config, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(first.lm_head.weight, other.lm_head.weight)


def test_sequence_expansion(model):
    ids = torch.tensor([[1, 5, IMG, 6], [1, IMG, 7, 8]])
    out = model(ids, pixels(2))
    visual = model.config.num_visual_tokens
    assert out.logits.shape == (2, 4 - 1 + visual, 40)
    assert out.modality_indicators[0].tolist() == [0, 0] + [1] * visual + [0]
    assert out.modality_indicators[1].tolist() == [0] + [1] * visual + [0, 0]
    assert torch.equal(out.inputs_embeds[0, 2:2 + visual], out.image_features[0])
    assert torch.equal(out.inputs_embeds[1, 0], model.model.embed_tokens.weight[1])


def test_two_images_in_one_sample_and_ragged_batch(model):
    """A sample with two images next to one with one: the shorter is padded at the end and unaffected."""
    images = pixels(3)
    ragged = model(torch.tensor([[1, IMG, 5, IMG, 6], [1, IMG, 7, 8, 9]]), images)
    alone = model(torch.tensor([[1, IMG, 7, 8, 9]]), images[2:])
    visual = model.config.num_visual_tokens
    short = alone.logits.shape[1]
    assert ragged.logits.shape[1] == 5 - 2 + 2 * visual
    assert ragged.attention_mask[1, short:].eq(0).all() and ragged.attention_mask[1, :short].eq(1).all()
    assert torch.allclose(ragged.logits[1, :short], alone.logits[0], atol=1e-5)
    # batch composition changes matmul blocking, so equality holds to float32 rounding only
    assert torch.allclose(ragged.image_features[1], model.encode_images(images[1:2])[1][0], atol=1e-5)


def test_routing_sends_visual_tokens_to_copy_one(model):
    ids = torch.tensor([[1, IMG, 5, 6]])
    before = model(ids, pixels(1)).logits
    text_only_before = model(torch.tensor([[1, 5, 6]]), pixels(0)).logits
    layer = model.model.layers[0]
    saved = layer.self_attn.k_proj.multiway[1].weight.clone()
    try:
        with torch.no_grad():
            layer.self_attn.k_proj.multiway[1].weight.mul_(3.0)
        assert not torch.allclose(model(ids, pixels(1)).logits, before)
        assert torch.equal(model(torch.tensor([[1, 5, 6]]), pixels(0)).logits, text_only_before)
    finally:
        with torch.no_grad():
            layer.self_attn.k_proj.multiway[1].weight.copy_(saved)


def test_a_batch_of_one_query_routes_spans_as_the_row_gather_does(model):
    """Rows that share their text/image pattern are routed by slicing spans (few ops per layer); the logits and
    the pixel gradient equal those of the general gather/scatter routing that ragged batches take."""
    ids = torch.tensor([[1, 5, IMG, 6, 7]] * 3)
    layout = model.prepare_layout(ids)
    visual = model.config.num_visual_tokens
    assert layout.modality_runs == ((2, 0), (visual, 1), (2, 0))
    assert model.prepare_layout(torch.tensor([[1, 5, IMG, 6], [1, IMG, 7, 8]])).modality_runs is None
    results = []
    for routed in (layout, dataclasses.replace(layout, modality_runs=None)):
        images = pixels(3).requires_grad_(True)
        logits = model.last_token_logits(None, images, torch.tensor([1, 2]), layout=routed)
        (logits[:, 0] - logits[:, 1]).sum().backward()
        results.append((logits.detach(), images.grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-7)


def test_last_token_logits_equal_full_logits(model):
    ids = torch.tensor([[1, 5, IMG, 6], [1, IMG, 7, 8]])
    images = pixels(2)
    full = model(ids, images).logits[:, -1]
    rows = torch.tensor([3, 0, 39])
    assert torch.allclose(model.last_token_logits(ids, images, rows), full[:, rows], atol=1e-6)
    assert torch.allclose(model.last_token_logits(ids, images), full, atol=1e-6)


def test_left_padding_stays_finite(model):
    ids = torch.tensor([[0, 0, 1, IMG, 5], [1, 4, 3, IMG, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert torch.isfinite(model(ids, pixels(2), mask).logits).all()


@pytest.mark.parametrize("mode", ["full", "selective", "mixed", True])
def test_checkpointing_gives_same_logits_and_pixel_gradients(model, mode):
    """Recomputing in backward (every layer: vision, abstractor, decoder) changes memory, not values; with padding
    too (the attention mask path). True is the older flag, meaning 'full'."""
    ids = torch.tensor([[1, 5, IMG, 6], [1, IMG, 6, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    results = []
    for setting in (False, mode):
        model.set_gradient_checkpointing(setting)
        images = pixels(2).requires_grad_(True)
        logits = model.last_token_logits(ids, images, torch.tensor([1, 2]), mask)
        (logits[:, 0] - logits[:, 1]).sum().backward()
        results.append((logits.detach(), images.grad))
    model.set_gradient_checkpointing(False)
    assert results[0][1].abs().sum() > 0
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-7)


def test_unknown_checkpointing_mode_is_refused(model):
    with raises_one_line(ValueError, names=("'partial'", "off, full, selective, mixed")):
        model.set_gradient_checkpointing("partial")


def test_bf16_model_runs_close_to_float32(model):
    half = MPLUGOwl2ForCausalLM.random_init(model.config, dtype="bf16", seed=0)
    ids = torch.tensor([[1, 5, IMG, 6]])
    with torch.no_grad():
        reference = model.last_token_logits(ids, pixels(1))
        low = half.last_token_logits(ids, pixels(1))
    assert low.dtype == torch.float32
    assert (low - reference).abs().max() < 0.1 * reference.abs().max()


@pytest.mark.parametrize("ids, images, names", [
    ([[1, IMG, IMG, 5]], 1, ("2 image placeholder",)),
    ([[1, -5, IMG]], 1, ("-5",)),
    ([[1, 40, IMG]], 1, ("40",)),
])
def test_input_errors(model, ids, images, names):  # a caller's mistake in the Python API: named, no fix owed
    with raises_one_line(ValueError, names=names, fix=False):
        model(torch.tensor(ids), pixels(images))


def test_wrong_image_size_error(model):
    with raises_one_line(ValueError, names=("(84, 84)", "56x56")):
        model(torch.tensor([[1, IMG]]), pixels(1, size=84))
