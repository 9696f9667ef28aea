"""The tiny presets: tokenizer coverage, size and determinism (their speed: benchmarks/bench_train.py --preset tiny)."""
import torch

from vpkit.models import build_tiny_model, build_tiny_tokenizer
from vpkit.models.tiny import PROMPT_WORDS
from vpkit.scoring import all_score_words, word_token_ids


def test_tokenizer_holds_prompt_and_every_score_word():
    tokenizer = build_tiny_tokenizer()
    ids = word_token_ids(tokenizer, all_score_words())
    assert len(set(ids)) == len(all_score_words())
    for word in PROMPT_WORDS:
        assert tokenizer.unk_token_id not in tokenizer(word, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in tokenizer("USER: Rate the technical quality of the image. ASSISTANT:").input_ids
    assert tokenizer("good").input_ids[0] == tokenizer.bos_token_id == 1


def test_tiny_random_is_small_and_deterministic():
    model, tokenizer = build_tiny_model(seed=0)
    again, _ = build_tiny_model(seed=0)
    size_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert size_bytes < 4 * 2**20
    assert model.config.vision.image_size == 224 and model.config.vision.grid_size == 8
    assert model.config.vocab_size == len(tokenizer)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))

