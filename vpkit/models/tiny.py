"""Tiny mPLUG-Owl2: the same architecture at a few hundred thousand parameters, fast on a laptop CPU.

`tiny-random` is built here from a seed (deterministic weights) with its own small word-level tokenizer,
which holds the paper's prompt, the conversation words and every score word. `tiny` is the same architecture
with pretrained weights shipped in `vpkit/assets/tiny_mplug_owl2/` (written by `save_pretrained`).
"""
from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from vpkit.resources import package_path
from vpkit.scoring import all_score_words

from .mplug_owl2 import MPLUGOwl2ForCausalLM
from .mplug_owl2_config import AbstractorConfig, MPLUGOwl2Config, VisionConfig

TINY_RANDOM = "tiny-random"
TINY_ASSET_DIR = package_path("assets", "tiny_mplug_owl2")
TINY_IMAGE_SIZE = 224

SPACE = "\u2581"  # SentencePiece's word-start marker, as in the LLaMA tokenizer
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>")  # ids 0, 1, 2 as in LLaMA
PUNCTUATION = (".", ",", ":", ";", "?", "!", "'", '"', "(", ")", "<", ">", "|", "-", "/")
PROMPT_WORDS = ("USER", "ASSISTANT", "Rate", "the", "technical", "quality", "of", "image")
# A few more words so that nearby phrasings of the question do not collapse to <unk>.
EXTRA_WORDS = (
    "How", "What", "Is", "Can", "Please", "Describe", "Answer", "would", "you", "rate", "this", "picture",
    "photo", "is", "a", "an", "it", "and", "with", "one", "word", "in", "to", "be", "your", "The", "very",
    "not", "overall", "visual", "aesthetic", "sharp", "blurry", "noisy", "average", "perfect", "terrible",
    "acceptable", "score",
)


def tiny_vocabulary() -> dict[str, int]:
    """Token -> id: specials, the bare marker, newline, punctuation, then each word with and without the marker."""
    words = list(dict.fromkeys(PROMPT_WORDS + tuple(all_score_words()) + EXTRA_WORDS))
    tokens = [*SPECIAL_TOKENS, SPACE, "\n", *PUNCTUATION]
    for word in words:
        tokens += [SPACE + word, word]
    return {token: index for index, token in enumerate(dict.fromkeys(tokens))}


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer that splits like LLaMA's SentencePiece on simple text ("USER: " -> ▁USER : ▁)."""
    backend = Tokenizer(models.WordLevel(tiny_vocabulary(), unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    backend.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="first", split=True)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", pad_token="<unk>")


def tiny_config(vocab_size: int, image_size: int = TINY_IMAGE_SIZE, vision_width: int = 64, vision_layers: int = 2,
                vision_mlp_ratio: int = 2) -> MPLUGOwl2Config:
    """Sizes chosen so that forward + backward to the pixels at batch 32 takes well under a second on 2 cores.

    The patch is 28 px (the 7B model's is 14): at 224 px that gives 8 x 8 patches + CLS = 65 vision tokens, the
    token count of the 7B abstractor's output, and halves the CPU cost of the demo's 11 prompt trainings.
    The vision sizes are arguments for the `structural` pretraining recipe (a wider, deeper encoder); the
    abstractor takes the encoder's width, with a 2x MLP."""
    patch = 28
    vision = VisionConfig(hidden_size=vision_width, intermediate_size=vision_mlp_ratio * vision_width,
                          num_hidden_layers=vision_layers, num_attention_heads=4, image_size=image_size,
                          patch_size=patch)
    abstractor = AbstractorConfig(num_learnable_queries=16, hidden_size=vision_width, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=2 * vision_width,
                                  encoder_hidden_size=vision_width, grid_size=image_size // patch)
    return MPLUGOwl2Config(vocab_size=vocab_size, hidden_size=96, intermediate_size=192, num_hidden_layers=2,
                           num_attention_heads=4, vision=vision, abstractor=abstractor, source="tiny config")


def build_tiny_model(seed: int = 0, **sizes: int) -> tuple[MPLUGOwl2ForCausalLM, PreTrainedTokenizerFast]:
    """(tiny mPLUG-Owl2 with seeded random weights, float32 on CPU, eval mode; its tokenizer). `sizes`: the vision
    keyword arguments of `tiny_config` (none: the shipped sizes)."""
    tokenizer = build_tiny_tokenizer()
    model = MPLUGOwl2ForCausalLM.random_init(tiny_config(len(tokenizer), **sizes), seed=seed)
    return model, tokenizer
