"""The quality query as the paper asks it, and the scorer interface over every supported model.

Flow (one interface for all models): images in [0, 1] at `scorer.image_size` -> optional prompter
(any nn.Module mapping [0, 1] images to [0, 1] images; the only trainable part) -> normalisation (after the
prompt, as the paper) -> frozen VLM -> last-position logits of the score words only -> float32 score.
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

from .mplug_owl2 import IMAGE_TOKEN_INDEX, MPLUGOwl2ForCausalLM, MultimodalLayout

# The paper's question and its exact mPLUG-Owl2 prompt. The conversation template `mplug_owl2` (no system
# prompt, separator " ") renders USER's message "<|image|>" + query and an empty ASSISTANT turn as below:
# one space after "USER:", none after the placeholder, one before "ASSISTANT:", nothing after the colon.
PAPER_QUERY = "Rate the technical quality of the image."
MPLUG_OWL2_IMAGE_TOKEN = "<|image|>"
MPLUG_OWL2_TEMPLATE = "USER: <|image|>{query} ASSISTANT:"
PAPER_PROMPT = "USER: <|image|>Rate the technical quality of the image. ASSISTANT:"

# Normalisation applied after the prompt. The paper's code uses ImageNet statistics although the model was
# trained with CLIP's; "imagenet" reproduces the paper, "clip" matches the model's training.
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


def tokenize_with_image(prompt: str, tokenizer, placeholder: str = MPLUG_OWL2_IMAGE_TOKEN,
                        image_token_id: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """BOS, then the ids of `prompt` with each `placeholder` replaced by `image_token_id` (mPLUG-Owl2's convention).

    Each text chunk between placeholders is tokenised on its own, as the reference's tokenizer_image_token does;
    the reference's tokenizer added a BOS to every chunk and kept only the first chunk's, so the ids are one
    BOS + the chunks' ids without special tokens (see `bos_prefixed_ids` for why BOS is added here).
    """
    if placeholder not in prompt:
        raise ValueError(f"prompt {prompt!r} has no image placeholder {placeholder!r}")
    ids = [_bos_id(tokenizer)]
    for index, chunk in enumerate(prompt.split(placeholder)):
        if index:
            ids.append(image_token_id)
        ids.extend(text_ids(tokenizer, chunk))
    return ids


def bos_prefixed_ids(tokenizer, text: str) -> list[int]:
    """BOS + the ids of `text` without special tokens, whatever the checkpoint's tokenizer_config.json says.

    The original code (transformers 4.31's slow LlamaTokenizer) added BOS by default. transformers 5 adds it
    only when tokenizer_config.json says `add_bos_token: true`; without that key it adds none, which would
    shift every position by one and change the score silently. So BOS is never left to the tokenizer.
    """
    return [_bos_id(tokenizer), *text_ids(tokenizer, text)]


def text_ids(tokenizer, text: str) -> list[int]:
    """Token ids of `text` alone: no BOS, no EOS."""
    return list(tokenizer(text, add_special_tokens=False).input_ids) if text else []


def check_starts_with_bos(ids: list[int], bos_token_id: int | None, source: str) -> None:
    """Refuse query ids that do not start with the model's BOS id (config.json `bos_token_id`, LLaMA's 1)."""
    if bos_token_id is not None and (not ids or ids[0] != bos_token_id):
        raise ValueError(f"{source}: the query starts with {ids[:1]} (the tokenizer's BOS) but the model's "
                         f"config.json says bos_token_id {bos_token_id}; use the tokenizer files saved with the model")


def _bos_id(tokenizer) -> int:
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


class MPLUGOwl2Scorer(QualityScorer):
    """mPLUG-Owl2 (or the tiny same-architecture models) asked the paper's question."""

    def __init__(self, model: MPLUGOwl2ForCausalLM, tokenizer, *, normalisation: str = "imagenet",
                 score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY, checkpointing: bool = False):
        super().__init__(model, tokenizer, image_size=model.config.vision.image_size, normalisation=normalisation,
                         score_type=score_type, query=query)
        model.set_gradient_checkpointing(checkpointing)
        self.prompt = MPLUG_OWL2_TEMPLATE.format(query=query)
        self.prompt_ids = tokenize_with_image(self.prompt, tokenizer)
        check_starts_with_bos(self.prompt_ids, model.config.bos_token_id, "mPLUG-Owl2 query")
        self._layouts: dict[tuple[int, str], MultimodalLayout] = {}

    def input_ids(self, batch_size: int) -> Tensor:
        return torch.tensor(self.prompt_ids, dtype=torch.long, device=self.device).expand(batch_size, -1)

    def prepare_batch(self, batch_size: int) -> None:
        self.layout(batch_size)

    def layout(self, batch_size: int) -> MultimodalLayout:
        """The expanded-sequence layout for a batch size, built once per (batch size, device)."""
        key = (batch_size, str(self.device))
        if key not in self._layouts:
            self._layouts[key] = self.model.prepare_layout(self.input_ids(batch_size))
        return self._layouts[key]

    def pixel_word_logits(self, pixel_values: Tensor) -> Tensor:
        layout = self.layout(pixel_values.shape[0])
        return self.model.last_token_logits(None, pixel_values, self.word_ids, layout=layout)


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


# ===================================================================== entry point
def load_scorer(model: str | Path = "tiny", *, dtype: torch.dtype | str = "fp32", device: torch.device | str = "cpu",
                normalisation: str | None = None, score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY,
                checkpointing: bool = False) -> QualityScorer:
    """A frozen scorer for `model`: "tiny" (the shipped pretrained toy), "tiny-random", or a local folder
    holding an mPLUG-Owl2 or a llava-hf checkpoint (told apart by its config.json).

    `normalisation` defaults to "imagenet" for mPLUG-Owl2 models (the paper's code) and "clip" for LLaVA.
    """
    from .loading import resolve_dtype
    from .tiny import TINY_ASSET_DIR, TINY_RANDOM, build_tiny_model

    torch_dtype = resolve_dtype(dtype)
    options = {"score_type": score_type, "query": query, "checkpointing": checkpointing}
    if str(model) == TINY_RANDOM:
        vlm, tokenizer = build_tiny_model(seed=0)
        return MPLUGOwl2Scorer(vlm.to(device=device, dtype=torch_dtype), tokenizer,
                               normalisation=normalisation or "imagenet", **options)
    if str(model) == "tiny":
        if not (TINY_ASSET_DIR / "config.json").is_file():
            raise FileNotFoundError(f"the pretrained tiny model is not installed at {TINY_ASSET_DIR}; use "
                                    f"load_scorer({TINY_RANDOM!r}) for the random-weight tiny model")
        model = TINY_ASSET_DIR
    folder = Path(model)
    model_type = _model_type(folder)
    if model_type == "mplug_owl2":
        vlm = MPLUGOwl2ForCausalLM.from_pretrained(folder, dtype=torch_dtype, device=device)
        tokenizer = load_tokenizer(folder)
        return MPLUGOwl2Scorer(vlm, tokenizer, normalisation=normalisation or "imagenet", **options)
    if model_type == "llava":
        from .llava import load_llava_scorer

        return load_llava_scorer(folder, dtype=torch_dtype, device=device, normalisation=normalisation or "clip",
                                 **options)
    raise ValueError(f"{folder / 'config.json'}: field 'model_type' is {model_type!r}; supported: 'mplug_owl2' "
                     "(MAGAer13/mplug-owl2-llama2-7b layout) and 'llava' (llava-hf layout), or 'tiny' / "
                     f"{TINY_RANDOM!r}")


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


def _model_type(folder: Path) -> str | None:
    if not folder.is_dir():
        raise FileNotFoundError(f"model {str(folder)!r} is neither 'tiny', 'tiny-random' nor an existing folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path} not found: a model folder needs the checkpoint's config.json")
    try:
        return json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{config_path}: not a JSON object ({err})") from None
