"""Frozen vision-language models that score image quality: mPLUG-Owl2 (own implementation), LLaVA-1.5
(transformers), and tiny same-architecture models for CPU work. Start with `load_scorer`."""
from .base import NORMALISATIONS, PAPER_QUERY, QualityScorer
from .loading import CheckpointError, resolve_dtype
from .mplug_owl2 import IMAGE_TOKEN_INDEX, MPLUGOwl2ForCausalLM, MPLUGOwl2Output, MultimodalLayout
from .mplug_owl2_config import AbstractorConfig, ConfigError, MPLUGOwl2Config, VisionConfig
from .processor import ReferenceImageProcessor
from .query import MPLUG_OWL2_TEMPLATE, PAPER_PROMPT, MPLUGOwl2Scorer, tokenize_with_image
from .saving import save_pretrained
from .scorers import load_scorer
from .tiny import TINY_ASSET_DIR, TINY_RANDOM, build_tiny_model, build_tiny_tokenizer, tiny_config

__all__ = [
    "IMAGE_TOKEN_INDEX", "MPLUG_OWL2_TEMPLATE", "NORMALISATIONS", "PAPER_PROMPT", "PAPER_QUERY", "TINY_ASSET_DIR",
    "TINY_RANDOM", "AbstractorConfig", "CheckpointError", "ConfigError", "MPLUGOwl2Config", "MPLUGOwl2ForCausalLM",
    "MPLUGOwl2Output", "MPLUGOwl2Scorer", "MultimodalLayout", "QualityScorer", "ReferenceImageProcessor",
    "VisionConfig", "build_tiny_model", "build_tiny_tokenizer", "load_scorer", "resolve_dtype", "save_pretrained",
    "tiny_config", "tokenize_with_image",
]
