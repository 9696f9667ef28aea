"""Quality score from the next-token logits of the score words.

The paper's score is the softmax mass of the positive words against positive + negative words
at the last position: ``sum exp(pos) / (sum exp(pos) + sum exp(neg))``. We compute it in float32
from log-sum-exps, ``sigmoid(lse(pos) - lse(neg))``: the same number, safe for any logit size.
(The paper's raw ``exp`` ran under the Trainer's fp16 autocast, which computes ``exp`` in float32, so it
did not overflow for real logits either; what vpkit does differently is to compute only the last
position's score-word rows of the LM head, see vpkit.models.)
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

# name -> (positive words, negative words); the paper's code and README between them name these.
SCORE_TYPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "good_vs_bad": (("good",), ("bad",)),
    "good_vs_poor": (("good",), ("poor",)),
    "fine_vs_bad": (("fine",), ("bad",)),
    "fine_vs_poor": (("fine",), ("poor",)),
    "high_vs_low": (("high",), ("low",)),
    "excellent_vs_bad": (("excellent",), ("bad",)),
    "good+high_vs_poor+low": (("good", "high"), ("poor", "low")),
    "good+fine_vs_poor+bad": (("good", "fine"), ("poor", "bad")),
    "excellent+good_vs_poor+bad": (("excellent", "good"), ("poor", "bad")),
    "good+high+fine_vs_poor+low+bad": (("good", "high", "fine"), ("poor", "low", "bad")),
}
DEFAULT_SCORE_TYPE = "good+fine_vs_poor+bad"  # every one of the paper's 33 experiments uses it

# Q-Align's five levels, best first, and the weight of each in the expected score.
QALIGN_WORDS = ("excellent", "good", "fair", "poor", "bad")
QALIGN_WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)

# Markers tokenizers put on a word that follows a space: SentencePiece/Metaspace and byte-level BPE.
_SPACE_MARKERS = ("\u2581", "\u0120")


class ScoreWordError(ValueError):
    """A score word is not a single token of the tokenizer, or a score type is unknown."""


def score_words(score_type: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(positive words, negative words) of a score type, e.g. ``"good+fine_vs_poor+bad"``."""
    try:
        return SCORE_TYPES[score_type]
    except KeyError:
        known = sorted(SCORE_TYPES)
        raise ScoreWordError(f"unknown score type {score_type!r}; choose one of {known}") from None


def all_score_words() -> tuple[str, ...]:
    """Every word any score type uses, then the Q-Align words, each once, in a fixed order.

    A model can project its last position onto just these rows of the LM head.
    """
    words: list[str] = []
    for pos, neg in SCORE_TYPES.values():
        words.extend(w for w in pos + neg if w not in words)
    words.extend(w for w in QALIGN_WORDS if w not in words)
    return tuple(words)


def score_indices(score_type: str, words: Sequence[str] | None = None) -> tuple[list[int], list[int]]:
    """Positions of a score type's words in ``words`` (default ``all_score_words()``).

    Use them with :func:`score_from_logits` on logits restricted to ``words``.
    """
    words = list(all_score_words() if words is None else words)
    pos, neg = score_words(score_type)
    missing = [w for w in pos + neg if w not in words]
    if missing:
        raise ScoreWordError(f"score type {score_type!r} needs {missing}, "
                             f"which are not in the word list {words}")
    return [words.index(w) for w in pos], [words.index(w) for w in neg]


def word_token_id(tokenizer, word: str) -> int:
    """Token id of ``word`` as it follows a space (SentencePiece ``"▁good"``, byte-level ``"Ġgood"``).

    Looks the spaced form up in the vocabulary; failing that, encodes ``" " + word`` and drops
    whitespace-only pieces (LLaMA emits a lone ``"▁"`` first, which is why the paper takes index 1).
    Raises :class:`ScoreWordError` when the word is not exactly one known token.
    """
    vocab = tokenizer.get_vocab()
    for marker in _SPACE_MARKERS:
        if marker + word in vocab:
            return int(vocab[marker + word])
    ids = tokenizer.encode(" " + word, add_special_tokens=False)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    kept = [(i, p) for i, p in zip(ids, pieces, strict=True) if _strip_markers(p).strip()]
    unk = getattr(tokenizer, "unk_token_id", None)
    if len(kept) != 1 or kept[0][0] == unk:
        raise ScoreWordError(
            f"score word {word!r} is not a single known token of {type(tokenizer).__name__} "
            f"({getattr(tokenizer, 'name_or_path', '') or 'unnamed'}): ' {word}' encodes to {pieces}; "
            "choose a score type whose words are single tokens for this model")
    return int(kept[0][0])


def _strip_markers(piece: str) -> str:
    for marker in _SPACE_MARKERS:
        piece = piece.replace(marker, "")
    return piece


def word_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """:func:`word_token_id` of each word; raises when two words share a token."""
    ids = [word_token_id(tokenizer, w) for w in words]
    if len(set(ids)) != len(ids):
        raise ScoreWordError(f"score words {list(words)} map to repeated token ids {ids}")
    return ids


def score_from_logits(logits: torch.Tensor, pos_ids: Sequence[int], neg_ids: Sequence[int]) -> torch.Tensor:
    """Softmax mass of the positive words against positive + negative, float32 ``[...]``.

    ``logits`` is ``[..., V]`` at the answer position; ``V`` is the full vocabulary (ids are token
    ids) or a restricted word set (ids are indices into it, see :func:`score_indices`). Computed as
    ``sigmoid(logsumexp(pos) - logsumexp(neg))`` in float32, whatever the logits' dtype: a raw ``exp``
    would overflow past ~11 in fp16 (ours casts first) and past ~88 in fp32. The paper's raw ``exp`` ran
    under fp16 autocast, which computes it in fp32, so for real logits both give the same score.
    """
    pos_ids, neg_ids = _check_ids(logits, pos_ids, "pos_ids"), _check_ids(logits, neg_ids, "neg_ids")
    if set(pos_ids) & set(neg_ids):
        raise ValueError(f"positive and negative ids overlap: {sorted(set(pos_ids) & set(neg_ids))}")
    as_index = {"dtype": torch.long, "device": logits.device}
    return softmax_mass(logits, torch.tensor(pos_ids, **as_index), torch.tensor(neg_ids, **as_index))


def softmax_mass(logits: torch.Tensor, pos_index: torch.Tensor, neg_index: torch.Tensor) -> torch.Tensor:
    """:func:`score_from_logits` for index tensors already checked and on the logits' device: no host work, so
    a model's forward pass can call it every step (indexing a CUDA tensor with a Python list copies the list
    to the device and waits for it)."""
    logits = logits.float()
    pos = torch.logsumexp(logits[..., pos_index], dim=-1)
    neg = torch.logsumexp(logits[..., neg_index], dim=-1)
    return torch.sigmoid(pos - neg)


def qalign_score(logits: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """Q-Align's expected level in [0, 1], float32 ``[...]``.

    ``ids`` index the five words ``QALIGN_WORDS`` (excellent, good, fair, poor, bad) in ``logits``'
    last dim; their softmax is weighted 1, 0.75, 0.5, 0.25, 0.
    """
    ids = _check_ids(logits, ids, "ids")
    if len(ids) != len(QALIGN_WORDS) or len(set(ids)) != len(ids):
        raise ValueError(f"qalign_score needs {len(QALIGN_WORDS)} distinct ids for {QALIGN_WORDS}, got {ids}")
    probs = torch.softmax(logits.float()[..., ids], dim=-1)
    weights = torch.tensor(QALIGN_WEIGHTS, dtype=torch.float32, device=logits.device)
    return probs @ weights


def _check_ids(logits: torch.Tensor, ids, name: str) -> list[int]:
    ids = [int(i) for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids)]
    if not ids:
        raise ValueError(f"{name} is empty; a score needs at least one word on each side")
    size = logits.shape[-1]
    bad = [i for i in ids if not 0 <= i < size]
    if bad:
        raise ValueError(f"{name} {bad} out of range for logits with last dim {size}; pass token ids for "
                         "full-vocabulary logits or word indices for restricted logits")
    return ids
