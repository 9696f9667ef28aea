"""LLaVA-1.5 through transformers, behind QualityScorer, on a tiny random Llava built and saved here."""
import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from vpkit.models import NORMALISATIONS, PAPER_QUERY, QualityScorer, build_tiny_tokenizer, load_scorer
from vpkit.models.llava import LLAVA_TEMPLATE, LlavaScorer
from vpkit.prompters import build_prompter

IMAGE_SIZE, PATCH = 56, 14


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=IMAGE_SIZE, patch_size=PATCH, projection_dim=32)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256)
    config = LlavaConfig(vision_config=vision, text_config=text,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_llava")
    LlavaForConditionalGeneration(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def scorer(llava_dir):
    return load_scorer(llava_dir)


def images(batch, seed=0):
    return torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


def test_llava_folder_gives_a_llava_scorer(scorer):
    assert isinstance(scorer, LlavaScorer) and isinstance(scorer, QualityScorer)
    assert scorer.image_size == IMAGE_SIZE and scorer.normalisation == "clip"
    assert scorer.prompt == LLAVA_TEMPLATE.format(query=PAPER_QUERY)
    assert scorer.prompt == "USER: <image>\nRate the technical quality of the image. ASSISTANT:"
    patches = (IMAGE_SIZE // PATCH) ** 2
    assert scorer.prompt_ids.count(scorer.image_token_id) == patches
    assert not any(p.requires_grad for p in scorer.model.parameters())


def test_word_logits_equal_the_full_model_logits(scorer):
    batch = images(3)
    with torch.no_grad():
        mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATIONS["clip"])
        full = scorer.model(input_ids=scorer.input_ids(3), pixel_values=(batch - mean) / std).logits[:, -1]
        words = scorer.word_logits(batch)
        scores = scorer(batch)
    assert torch.allclose(words, full[:, scorer.word_ids], atol=1e-5)
    assert scores.shape == (3,) and scores.dtype == torch.float32 and ((scores > 0) & (scores < 1)).all()


def test_gradients_reach_the_prompt_only(scorer):
    prompter = build_prompter("padding", size=4, image_size=IMAGE_SIZE)
    scorer(images(2), prompter).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in prompter.parameters())
    assert all(p.grad is None for p in scorer.model.parameters())


@pytest.mark.parametrize("mode", [True, "selective", "mixed"])
def test_checkpointing_gives_the_same_scores_and_gradients(llava_dir, scorer, mode):
    lean = load_scorer(llava_dir, checkpointing=mode)
    flagged = [m for m in lean.model.modules() if getattr(m, "gradient_checkpointing", False)]
    assert flagged and all(m.training for m in flagged)  # transformers checkpoints only in training mode
    lean.eval()
    assert lean.model.training  # the scorer keeps the checkpointing mode whatever eval() says
    results = []
    for candidate in (scorer, lean):
        prompter = build_prompter("full", image_size=IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
        scores = candidate(images(2), prompter)
        scores.sum().backward()
        results.append((scores.detach(), next(prompter.parameters()).grad))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-7)


def test_image_size_error(scorer):
    with pytest.raises(ValueError, match=f"{IMAGE_SIZE}x{IMAGE_SIZE}"):
        scorer(torch.rand(1, 3, 336, 336))
