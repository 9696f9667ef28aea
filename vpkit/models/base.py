"""The scorer interface every supported model shares, and what any of them needs to ask the paper's question:
the query text, the normalisations, BOS-safe tokenisation, and a model folder's tokenizer.

Flow (one interface for all models): images in [0, 1] at `scorer.image_size` -> optional prompter
(any nn.Module mapping [0, 1] images to [0, 1] images; the only trainable part) -> normalisation (after the
prompt, as the paper) -> frozen VLM -> last-position logits of the score words only -> float32 score.
Model-specific scorers: `MPLUGOwl2Scorer` (vpkit.models.query), `LlavaScorer` (vpkit.models.llava); the one
to use for a model name or folder: `load_scorer` (vpkit.models.scorers).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from vpkit.scoring import (
    DEFAULT_SCORE_TYPE,
    ScoreWordError,
    all_score_words,
    score_indices,
    score_words,
    softmax_mass,
    word_token_id,
)

# The paper's question (each model's scorer wraps it in that model's conversation template).
PAPER_QUERY = "Rate the technical quality of the image."

# Normalisation applied after the prompt. The paper's code uses ImageNet statistics although the model was
# trained with CLIP's; "imagenet" reproduces the paper, "clip" matches the model's training.
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def bos_prefixed_ids(tokenizer, text: str) -> list[int]:
    """BOS + the ids of `text` without special tokens, whatever the checkpoint's tokenizer_config.json says.

    The original code (transformers 4.31's slow LlamaTokenizer) added BOS by default. transformers 5 adds it
    only when tokenizer_config.json says `add_bos_token: true`; without that key it adds none, which would
    shift every position by one and change the score silently. So BOS is never left to the tokenizer.
    """
    return [bos_id(tokenizer), *text_ids(tokenizer, text)]


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` alone: no BOS, no EOS."""
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []


def check_starts_with_bos(ids: list[int], bos_token_id: int | None, source: str) -> None:
    """Refuse query ids that do not start with the model's BOS id (config.json `bos_token_id`, LLaMA's 1)."""
    if bos_token_id is not None and (not ids or ids[0] != bos_token_id):
        raise ValueError(f"{source}: the query starts with {ids[:1]} (the tokenizer's BOS) but the model's "
                         f"config.json says bos_token_id {bos_token_id}; use the tokenizer files saved with the model")


def bos_id(tokenizer) -> int:
    """The tokenizer's BOS id; an error naming the fix when it has none."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ValueError(f"tokenizer {name}: has no BOS token, which the LLaMA-family query starts with; "
                         "set bos_token (\"<s>\") in its tokenizer_config.json")
    return int(bos)


class QualityScorer(nn.Module):
    """Frozen VLM + quality query. `forward(images01, prompter=None) -> float32 [B]` scores in [0, 1].

    Subclasses provide `pixel_word_logits(pixel_values)`: score-word logits from normalised model input.
    """

    def __init__(self, model: nn.Module, tokenizer, *, image_size: int, normalisation: str,
                 score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY):
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {sorted(NORMALISATIONS)}, got {normalisation!r}")
        model.requires_grad_(False)
        self.model = model
        self.model_training_mode = False  # the VLM stays in eval mode whatever train() is called with
        self.model.eval()
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.normalisation = normalisation
        self.score_type = score_type
        self.query = query
        self.score_word_list, word_ids = _score_vocabulary(tokenizer, score_type)
        self.positive_index, self.negative_index = score_indices(score_type, self.score_word_list)
        device = _module_device(model)
        self.register_buffer("word_ids", torch.tensor(word_ids, dtype=torch.long, device=device), persistent=False)
        # the score's word positions as device tensors, made once: indexing with the Python lists would copy them
        # to the device (and wait for the copy) in every forward pass
        for name, index in (("positive_rows", self.positive_index), ("negative_rows", self.negative_index)):
            self.register_buffer(name, torch.tensor(index, dtype=torch.long, device=device), persistent=False)
        mean, std = NORMALISATIONS[normalisation]
        self.register_buffer("mean", torch.tensor(mean, device=device).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, device=device).view(1, 3, 1, 1), persistent=False)

    # ----------------------------------------------------------------- properties
    @property
    def device(self) -> torch.device:
        return self.word_ids.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def train(self, mode: bool = True) -> QualityScorer:
        super().train(mode)
        self.model.train(self.model_training_mode)
        return self

    # ----------------------------------------------------------------- pipeline
    def check_images(self, images01: Tensor) -> Tensor:
        if not isinstance(images01, Tensor) or images01.dim() != 4 or images01.shape[1] != 3:
            shape = tuple(images01.shape) if isinstance(images01, Tensor) else type(images01).__name__
            raise ValueError(f"images must be a float tensor [B, 3, {self.image_size}, {self.image_size}], got {shape}")
        if not images01.is_floating_point():
            raise ValueError(f"images must be float in [0, 1], got dtype {images01.dtype} (divide uint8 images by 255)")
        if images01.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images are {images01.shape[-2]}x{images01.shape[-1]} but this scorer takes "
                             f"{self.image_size}x{self.image_size}; prepare them at scorer.image_size")
        return images01.to(self.device, torch.float32)

    def normalise(self, images01: Tensor) -> Tensor:
        """(x - mean) / std with the scorer's statistics, float32."""
        return (images01 - self.mean) / self.std

    def prepare_pixels(self, images01: Tensor, prompter: nn.Module | None = None) -> Tensor:
        """Model input in the model dtype: prompt (float32), then normalise, then cast."""
        images = self.check_images(images01)
        if prompter is not None:
            images = prompter(images)
        return self.normalise(images.float()).to(self.dtype)

    def pixel_word_logits(self, pixel_values: Tensor) -> Tensor:
        """float32 [B, K] logits of `score_word_list` from normalised model input."""
        raise NotImplementedError

    def prepare_batch(self, batch_size: int) -> None:
        """Host-side work for a batch size, done outside torch.compile (nothing here; models override)."""

    def word_logits(self, images01: Tensor, prompter: nn.Module | None = None) -> Tensor:
        """float32 [B, K] last-position logits of `score_word_list`."""
        return self.pixel_word_logits(self.prepare_pixels(images01, prompter))

    def score_logits(self, word_logits: Tensor) -> Tensor:
        """float32 [B] score of the scorer's score type from `word_logits` output."""
        return softmax_mass(word_logits, self.positive_rows, self.negative_rows)

    def forward(self, images01: Tensor, prompter: nn.Module | None = None) -> Tensor:
        return self.score_logits(self.word_logits(images01, prompter))


def _score_vocabulary(tokenizer, score_type: str) -> tuple[tuple[str, ...], list[int]]:
    """Every score word that is a distinct single token; the score type's own words must be."""
    positive, negative = score_words(score_type)
    required = positive + negative
    words, ids = [], []
    for word in all_score_words():
        try:
            token = word_token_id(tokenizer, word)
        except ScoreWordError:
            if word in required:
                raise
            continue
        if token in ids:
            if word in required:
                raise ScoreWordError(f"score word {word!r} shares token id {token} with {words[ids.index(token)]!r}")
            continue
        words.append(word)
        ids.append(token)
    return tuple(words), ids


def _module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


# Any of these makes a folder loadable by AutoTokenizer (fast tokenizer, or sentencepiece model).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")


def load_tokenizer(folder: Path):
    """AutoTokenizer of a model folder. It also parses config.json, whose reference-era fields (rope_scaling)
    draw a deprecation warning from transformers 5 that says nothing about the tokenizer; it is silenced."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(f"{folder}: no tokenizer files ({', '.join(TOKENIZER_FILES)}); copy the tokenizer "
                                "of the model's release into this folder")
    settings = folder / "tokenizer_config.json"
    if settings.is_file() and json.loads(settings.read_text(encoding="utf-8")).get("tokenizer_class") == \
            "PreTrainedTokenizerFast":
        # A plain fast tokenizer (the tiny models'): loading it directly skips AutoTokenizer's reading of
        # config.json, whose model_type transformers does not know and warns about.
        return PreTrainedTokenizerFast.from_pretrained(str(folder))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*rope_scaling.*", category=FutureWarning)
        return AutoTokenizer.from_pretrained(str(folder), **_llama_tokenizer_options(settings))


# The LLaMA tokenizer classes: SentencePiece with a dummy prefix ("Rate" -> "▁R" "ate").
LLAMA_TOKENIZER_CLASSES = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")


def _llama_tokenizer_options(settings: Path) -> dict:
    """Keep SentencePiece's dummy prefix: transformers 4.31's LlamaTokenizer (the original) always applied it and
    had no add_prefix_space option; transformers 5 drops it when tokenizer_config.json says add_prefix_space:
    false, which turns "▁USER" into "USER" and changes every id of the query."""
    if not settings.is_file():
        return {}
    values = json.loads(settings.read_text(encoding="utf-8"))
    if values.get("tokenizer_class") in LLAMA_TOKENIZER_CLASSES and values.get("add_prefix_space") is False:
        return {"add_prefix_space": True}
    return {}
