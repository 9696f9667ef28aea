"""The quality query and QualityScorer on the tiny mPLUG-Owl2: prompt text, ids, normalisation, gradients."""
import pytest
import torch
from _messages import raises_one_line
from torch import nn

import vpkit.models.tiny as tiny_module
from vpkit.models import (
    IMAGE_TOKEN_INDEX,
    MPLUG_OWL2_TEMPLATE,
    NORMALISATIONS,
    PAPER_PROMPT,
    PAPER_QUERY,
    MPLUGOwl2Scorer,
    QualityScorer,
    build_tiny_model,
    build_tiny_tokenizer,
    load_scorer,
    save_pretrained,
    tokenize_with_image,
)
from vpkit.prompters import build_prompter
from vpkit.scoring import ScoreWordError, score_from_logits, word_token_id


@pytest.fixture(scope="module")
def scorer():
    return load_scorer("tiny-random")


def images(batch, size=224, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_paper_prompt_is_the_exact_text():
    assert PAPER_QUERY == "Rate the technical quality of the image."
    assert PAPER_PROMPT == "USER: <|image|>Rate the technical quality of the image. ASSISTANT:"
    assert MPLUG_OWL2_TEMPLATE.format(query=PAPER_QUERY) == PAPER_PROMPT


def test_prompt_ids_follow_the_reference_chunking():
    tokenizer = build_tiny_tokenizer()
    ids = tokenize_with_image(PAPER_PROMPT, tokenizer)
    placeholder = ids.index(IMAGE_TOKEN_INDEX)
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.convert_ids_to_tokens(ids[1:placeholder]) == ["\u2581USER", ":", "\u2581"]
    assert tokenizer.convert_ids_to_tokens(ids[placeholder + 1:]) == [
        "\u2581Rate", "\u2581the", "\u2581technical", "\u2581quality", "\u2581of", "\u2581the", "\u2581image", ".",
        "\u2581ASSISTANT", ":"]
    two = tokenize_with_image("USER: <|image|><|image|>Rate ASSISTANT:", tokenizer)
    assert two.count(IMAGE_TOKEN_INDEX) == 2 and two.count(tokenizer.bos_token_id) == 1
    with raises_one_line(ValueError, names=("<|image|>",), fix=False):
        tokenize_with_image("no image here", tokenizer)


def test_scorer_interface_and_frozen_model(scorer):
    assert isinstance(scorer, QualityScorer) and isinstance(scorer, MPLUGOwl2Scorer)
    assert scorer.image_size == 224 and scorer.normalisation == "imagenet"
    assert not any(p.requires_grad for p in scorer.model.parameters())
    scorer.train()
    assert scorer.training and not scorer.model.training
    scorer.eval()
    assert scorer.prompt_ids == tokenize_with_image(PAPER_PROMPT, scorer.tokenizer)
    assert {"good", "fine", "poor", "bad"} <= set(scorer.score_word_list)


def test_zero_shot_scores(scorer):
    batch = images(3)
    with torch.no_grad():
        scores = scorer(batch)
        logits = scorer.word_logits(batch)
    assert scores.shape == (3,) and scores.dtype == torch.float32
    assert ((scores > 0) & (scores < 1)).all()
    assert logits.shape == (3, len(scorer.score_word_list)) and logits.dtype == torch.float32
    assert torch.equal(scorer(batch), scores)


def test_score_matches_full_forward_with_paper_normalisation(scorer):
    batch = images(2, seed=5)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATIONS["imagenet"])
    ids = torch.tensor(scorer.prompt_ids).expand(2, -1)
    with torch.no_grad():
        full = scorer.model(ids, (batch - mean) / std).logits[:, -1]
        expected = score_from_logits(full, [word_token_id(scorer.tokenizer, w) for w in ("good", "fine")],
                                     [word_token_id(scorer.tokenizer, w) for w in ("poor", "bad")])
        assert torch.allclose(scorer(batch), expected, atol=1e-6)


def test_clip_normalisation_is_the_correction():
    clip = load_scorer("tiny-random", normalisation="clip")
    assert clip.normalisation == "clip"
    batch = images(1)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATIONS["clip"])
    assert torch.allclose(clip.normalise(batch), (batch - mean) / std)
    with raises_one_line(ValueError, names=("normalisation", "'mean'", "clip")):
        load_scorer("tiny-random", normalisation="mean")


def test_gradients_reach_the_prompt_only(scorer):
    prompter = build_prompter("padding", size=10, image_size=224)
    batch = images(2)
    scores = scorer(batch, prompter)
    ((scores - torch.tensor([0.2, 0.9])) ** 2).mean().backward()
    grads = [p.grad for p in prompter.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for p in scorer.model.parameters())


def test_plain_parameter_prompter_changes_the_score(scorer):
    class AddPrompt(nn.Module):
        def __init__(self):
            super().__init__()
            self.prompt = nn.Parameter(torch.full((1, 3, 224, 224), 0.3))

        def forward(self, x):
            return (x + self.prompt).clamp(0, 1)

    prompter, batch = AddPrompt(), images(2)
    with torch.no_grad():
        assert not torch.allclose(scorer(batch, prompter), scorer(batch))
    scorer(batch, prompter).sum().backward()
    assert prompter.prompt.grad.abs().sum() > 0


def test_layout_is_cached_per_batch_size(scorer):
    assert scorer.layout(4) is scorer.layout(4)
    assert scorer.layout(4) is not scorer.layout(5)
    assert scorer.layout(4).text_ids.shape[0] == 4


@pytest.mark.parametrize("bad, names", [
    (torch.rand(2, 3, 448, 448), ("448", "224x224")),
    ((torch.rand(2, 3, 224, 224) * 255).to(torch.uint8), ("uint8",)),
    (torch.rand(3, 224, 224), ("[B, 3, 224, 224]",)),
])
def test_image_errors(scorer, bad, names):
    with raises_one_line(ValueError, names=names):
        scorer(bad)


def test_score_type_choice():
    other = load_scorer("tiny-random", score_type="high_vs_low")
    assert other.score_type == "high_vs_low"
    with raises_one_line(ScoreWordError, names=("'nice_vs_ugly'", "high_vs_low")):
        load_scorer("tiny-random", score_type="nice_vs_ugly")


def test_bf16_scorer_keeps_float32_scores_and_prompt_gradients():
    low = load_scorer("tiny-random", dtype="bf16")
    assert low.dtype == torch.bfloat16
    prompter = build_prompter("full", image_size=224)
    scores = low(images(2), prompter)
    scores.sum().backward()
    assert scores.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in prompter.parameters())


def test_load_scorer_from_saved_folder(scorer, tmp_path):
    model, tokenizer = build_tiny_model(seed=0)
    save_pretrained(model, tokenizer, tmp_path / "tiny")
    loaded = load_scorer(tmp_path / "tiny")
    assert isinstance(loaded, MPLUGOwl2Scorer) and loaded.prompt_ids == scorer.prompt_ids
    batch = images(2)
    with torch.no_grad():
        assert torch.allclose(loaded(batch), scorer(batch), atol=1e-6)


def test_tiny_without_shipped_weights_names_tiny_random(tmp_path, monkeypatch):
    monkeypatch.setattr(tiny_module, "TINY_ASSET_DIR", tmp_path / "absent")
    with raises_one_line(FileNotFoundError, names=(tmp_path / "absent",), fix="tiny-random"):
        load_scorer("tiny")


def test_tiny_loads_the_shipped_folder(tmp_path, monkeypatch):
    model, tokenizer = build_tiny_model(seed=7)
    save_pretrained(model, tokenizer, tmp_path / "asset")
    monkeypatch.setattr(tiny_module, "TINY_ASSET_DIR", tmp_path / "asset")
    loaded = load_scorer("tiny")
    assert torch.equal(loaded.model.lm_head.weight, model.lm_head.weight)


def test_load_scorer_errors(tmp_path):
    with raises_one_line(FileNotFoundError, names=(tmp_path / "missing",), fix="tiny-random"):  # what it takes
        load_scorer(tmp_path / "missing")
    (tmp_path / "config.json").write_text('{"model_type": "qwen2"}')
    with raises_one_line(ValueError, names=(tmp_path, "'qwen2'")):
        load_scorer(tmp_path)


def test_scoring_with_a_prompt_compiles_as_one_graph():
    """torch.compile (train --compile) gets the whole prompt -> score path as one graph: no branch on a tensor's
    value and no tensor of data-dependent size in the forward pass (the layout precomputes both)."""
    import torch._dynamo

    scorer = load_scorer("tiny-random")
    prompter = build_prompter("padding", 15, "add", image_size=scorer.image_size)
    scorer.layout(2)
    explanation = torch._dynamo.explain(lambda images: scorer(images, prompter))(torch.rand(2, 3, 224, 224))
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons


def test_compiled_prompted_scorer_is_one_graph_per_batch_size_from_a_fresh_scorer(monkeypatch):
    """What `train --compile` builds: on a scorer that has never seen a batch size, the token layout is made
    eagerly before the compiled call, so each batch size compiles to one graph and later calls reuse it."""
    import functools

    from torch._dynamo.testing import CompileCounter

    import vpkit.evaluate

    counter = CompileCounter()
    monkeypatch.setattr(vpkit.evaluate.torch, "compile", functools.partial(torch.compile, backend=counter))
    scorer = load_scorer("tiny-random")
    prompter = build_prompter("padding", 15, "add", image_size=scorer.image_size)
    model = vpkit.evaluate.PromptedScorer(scorer, prompter, compile_model=True)
    for batch_size in (3, 3, 2, 2):
        model(torch.rand(batch_size, 3, 224, 224))
    torch._dynamo.reset()
    assert counter.frame_count == 2
