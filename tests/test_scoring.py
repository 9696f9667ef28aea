"""vpkit.scoring: every score type against a hand computation, Q-Align, and word -> token id lookup."""
import math

import numpy as np
import pytest
import torch
from _messages import raises_one_line
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vpkit.scoring import (
    DEFAULT_SCORE_TYPE,
    QALIGN_WEIGHTS,
    QALIGN_WORDS,
    SCORE_TYPES,
    ScoreWordError,
    all_score_words,
    qalign_score,
    score_from_logits,
    score_indices,
    score_words,
    word_token_id,
    word_token_ids,
)

# the paper's code names 7 comparisons, its README 6; together these 10
PAPER_SCORE_TYPES = {
    "good_vs_bad", "good_vs_poor", "fine_vs_bad", "fine_vs_poor", "high_vs_low", "excellent_vs_bad",
    "good+high_vs_poor+low", "good+fine_vs_poor+bad", "excellent+good_vs_poor+bad",
    "good+high+fine_vs_poor+low+bad",
}
WORD_IDS = {"good": 11, "fine": 4, "high": 27, "excellent": 30, "bad": 2, "poor": 19, "low": 8, "fair": 15}
VOCAB = 40


def _hand_score(logits: np.ndarray, pos: list[int], neg: list[int]) -> np.ndarray:
    """sum exp(pos) / sum exp(pos + neg) in float64 with the row maximum taken out (no overflow)."""
    rows = logits.astype(np.float64)
    shifted = np.exp(rows - rows[:, pos + neg].max(axis=1, keepdims=True))
    return shifted[:, pos].sum(1) / shifted[:, pos + neg].sum(1)


def _ids(words):
    return [WORD_IDS[w] for w in words]


def test_score_types_are_the_papers():
    assert set(SCORE_TYPES) == PAPER_SCORE_TYPES
    assert DEFAULT_SCORE_TYPE == "good+fine_vs_poor+bad"
    for name, (pos, neg) in SCORE_TYPES.items():
        assert name == "+".join(pos) + "_vs_" + "+".join(neg)


@pytest.mark.parametrize("score_type", sorted(PAPER_SCORE_TYPES))
def test_every_score_type_matches_a_hand_computation(score_type):
    logits = torch.randn(5, VOCAB, generator=torch.Generator().manual_seed(0)) * 4
    pos, neg = (_ids(words) for words in score_words(score_type))
    score = score_from_logits(logits, pos, neg)
    assert score.dtype == torch.float32 and score.shape == (5,)
    np.testing.assert_allclose(score.numpy(), _hand_score(logits.numpy(), pos, neg), rtol=1e-6)


def test_large_logits_do_not_overflow():
    # fp32 exp overflows past ~88; these logits are 1e4
    logits = torch.full((1, VOCAB), -1e4)
    logits[0, _ids(["good", "fine", "poor", "bad"])] = torch.tensor([1e4, 1e4 - 1, 1e4 - 2, 1e4 - 3])
    score = score_from_logits(logits, _ids(["good", "fine"]), _ids(["poor", "bad"]))
    expected = (1 + math.exp(-1)) / (1 + math.exp(-1) + math.exp(-2) + math.exp(-3))
    assert score.item() == pytest.approx(expected, rel=1e-6)


def test_fp16_logits_that_overflow_a_raw_exp_still_score():
    logits = torch.zeros(2, VOCAB, dtype=torch.float16)
    logits[:, WORD_IDS["good"]] = torch.tensor([20.0, 1e4])
    logits[:, WORD_IDS["bad"]] = torch.tensor([18.0, 1e4])
    raw = torch.exp(logits[:, [WORD_IDS["good"]]]).sum(1)  # a raw exp in fp16 (outside autocast)
    assert torch.isinf(raw).all()
    score = score_from_logits(logits, [WORD_IDS["good"]], [WORD_IDS["bad"]])
    assert score.dtype == torch.float32
    torch.testing.assert_close(score, torch.tensor([1 / (1 + math.exp(-2)), 0.5]))


def test_gradient_is_finite_at_large_logits():
    logits = torch.full((2, VOCAB), 1e4, requires_grad=True)
    score_from_logits(logits, _ids(["good", "high"]), _ids(["poor", "low"])).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_leading_dims_are_kept():
    logits = torch.randn(3, 4, VOCAB)
    assert score_from_logits(logits, [1], [2]).shape == (3, 4)


def test_restricted_word_logits_give_the_full_vocabulary_score():
    words = all_score_words()
    full = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(1)) * 3
    restricted = full[:, _ids(words)]
    for score_type in SCORE_TYPES:
        pos, neg = score_indices(score_type)
        expected = score_from_logits(full, *(_ids(w) for w in score_words(score_type)))
        torch.testing.assert_close(score_from_logits(restricted, pos, neg), expected)


def test_all_score_words_cover_every_type_and_qalign_once():
    words = all_score_words()
    assert len(words) == len(set(words))
    used = {w for pos, neg in SCORE_TYPES.values() for w in pos + neg} | set(QALIGN_WORDS)
    assert set(words) == used == {"good", "fine", "high", "excellent", "bad", "poor", "low", "fair"}


def test_qalign_matches_a_hand_computation():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(2)) * 3
    ids = _ids(QALIGN_WORDS)
    rows = logits.double().numpy()[:, ids]
    probs = np.exp(rows) / np.exp(rows).sum(1, keepdims=True)
    expected = probs @ np.array([1, 0.75, 0.5, 0.25, 0])
    score = qalign_score(logits, ids)
    assert score.dtype == torch.float32
    np.testing.assert_allclose(score.numpy(), expected, rtol=1e-6)
    assert QALIGN_WEIGHTS == (1.0, 0.75, 0.5, 0.25, 0.0)


def test_qalign_extremes_and_overflow():
    logits = torch.zeros(2, VOCAB, dtype=torch.float16)
    logits[0, WORD_IDS["excellent"]] = 1e4
    logits[1, WORD_IDS["bad"]] = 1e4
    torch.testing.assert_close(qalign_score(logits, _ids(QALIGN_WORDS)), torch.tensor([1.0, 0.0]))


@pytest.mark.parametrize("call, names", [  # a caller's mistake in the Python API: the ids named, no fix owed
    (lambda lg: score_from_logits(lg, [], [1]), ("pos_ids",)),
    (lambda lg: score_from_logits(lg, [VOCAB], [1]), (str(VOCAB),)),
    (lambda lg: score_from_logits(lg, [-1], [1]), ("-1",)),
    (lambda lg: score_from_logits(lg, [1, 2], [2]), ("2",)),
    (lambda lg: qalign_score(lg, [1, 2, 3]), ("[1, 2, 3]", "5")),
    (lambda lg: qalign_score(lg, [1, 1, 2, 3, 4]), ("[1, 1, 2, 3, 4]", "5")),
])
def test_bad_ids_are_refused(call, names):
    with raises_one_line(ValueError, names=names, fix=False):
        call(torch.zeros(2, VOCAB))


def test_unknown_score_type_is_refused():
    with raises_one_line(ScoreWordError, names=("'good_vs_awful'", "good_vs_bad")):
        score_words("good_vs_awful")
    with raises_one_line(ScoreWordError, names=("'bad'",), fix=False):
        score_indices("good_vs_bad", words=["good", "poor"])


# ---- word -> token id, with tokenizers built here ----

def _wrap(model, *, normalizer=None, pre_tokenizer=None) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(model)
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    if pre_tokenizer is not None:
        tokenizer.pre_tokenizer = pre_tokenizer
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")


def _metaspace_wordlevel():
    # a SentencePiece-like vocabulary: words after a space carry "▁"; the bare forms are decoys
    vocab = {"[UNK]": 0, "▁": 1, "good": 2, "▁good": 3, "▁fine": 4, "▁poor": 5, "▁bad": 6, "▁the": 7,
             "bad": 8}
    return _wrap(models.WordLevel(vocab, unk_token="[UNK]"),
                 pre_tokenizer=pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always"))


def test_metaspace_wordlevel_tokenizer_gives_the_spaced_word():
    tokenizer = _metaspace_wordlevel()
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode("the good", add_special_tokens=False)) == \
        ["\u2581the", "\u2581good"]
    assert word_token_ids(tokenizer, ["good", "fine", "poor", "bad"]) == [3, 4, 5, 6]


def test_missing_word_is_an_error_naming_it():
    with raises_one_line(ScoreWordError, names=("'excellent'",), fix=False):
        word_token_id(_metaspace_wordlevel(), "excellent")


def test_lone_space_piece_is_skipped_like_llama():
    # LLaMA encodes " good" as ["▁", "good"-ish]; the paper therefore takes index 1
    vocab = {"[UNK]": 0, "\u2581": 1, "good": 2, "bad": 3}
    tokenizer = _wrap(models.WordLevel(vocab, unk_token="[UNK]"),
                      normalizer=normalizers.Replace(" ", "\u2581"),
                      pre_tokenizer=pre_tokenizers.Split("\u2581", behavior="isolated"))
    assert tokenizer.convert_ids_to_tokens(tokenizer.encode(" good", add_special_tokens=False)) == \
        ["\u2581", "good"]
    assert word_token_id(tokenizer, "good") == 2
    with raises_one_line(ScoreWordError, names=("'fine'",), fix=False):
        word_token_id(tokenizer, "fine")  # encodes to [UNK]


def test_byte_level_marker_and_plain_whitespace_vocabularies():
    byte_level = _wrap(models.WordLevel({"[UNK]": 0, "good": 1, "\u0120good": 2}, unk_token="[UNK]"),
                       pre_tokenizer=pre_tokenizers.Whitespace())
    assert word_token_id(byte_level, "good") == 2
    plain = _wrap(models.WordLevel({"[UNK]": 0, "poor": 5}, unk_token="[UNK]"),
                  pre_tokenizer=pre_tokenizers.Whitespace())
    assert word_token_id(plain, "poor") == 5


def test_word_split_into_pieces_is_an_error_listing_them():
    vocab = {"[UNK]": 0, "\u2581": 1, "e": 2, "x": 3, "c": 4, "l": 5, "n": 6, "t": 7,
             "\u2581ex": 8, "cel": 9, "lent": 10, "ce": 11, "le": 12, "nt": 13, "\u2581e": 14}
    merges = [("\u2581", "e"), ("\u2581e", "x"), ("c", "e"), ("ce", "l"), ("l", "e"), ("n", "t"),
              ("le", "nt")]
    tokenizer = _wrap(models.BPE(vocab, merges, unk_token="[UNK]"),
                      pre_tokenizer=pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always"))
    with raises_one_line(ScoreWordError, names=("'excellent'", "['\u2581ex', 'cel', 'lent']"), fix=False):
        word_token_id(tokenizer, "excellent")


def test_words_sharing_a_token_are_refused():
    vocab = {"[UNK]": 0, "\u2581good": 1}
    tokenizer = _wrap(models.WordLevel(vocab, unk_token="[UNK]"), pre_tokenizer=pre_tokenizers.Whitespace())
    tokenizer.get_vocab = lambda: {"\u2581good": 1, "\u2581fine": 1}  # a broken vocabulary
    with raises_one_line(ScoreWordError, names=("'good'", "'fine'"), fix=False):
        word_token_ids(tokenizer, ["good", "fine"])
