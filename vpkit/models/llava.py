"""LLaVA-1.5 (llava-hf layout) behind the QualityScorer interface, via transformers' own model class.

Prompt "USER: <image>\\n{query} ASSISTANT:", the `<image>` token expanded to one position per image feature
(as the llava-hf processor does), CLIP normalisation by default, 336 px for the released models.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from vpkit.scoring import DEFAULT_SCORE_TYPE

from .base import PAPER_QUERY, QualityScorer, bos_prefixed_ids, check_starts_with_bos, load_tokenizer
from .checkpointing import checkpoint_options, checkpointing_mode, part_modes

LLAVA_IMAGE_TOKEN = "<image>"
LLAVA_TEMPLATE = "USER: <image>\n{query} ASSISTANT:"


class LlavaScorer(QualityScorer):
    """A transformers `LlavaForConditionalGeneration`, frozen, scored at the last prompt position."""

    def __init__(self, model, tokenizer, *, normalisation: str = "clip", score_type: str = DEFAULT_SCORE_TYPE,
                 query: str = PAPER_QUERY, checkpointing: bool | str = False):
        vision = model.config.vision_config
        super().__init__(model, tokenizer, image_size=vision.image_size, normalisation=normalisation,
                         score_type=score_type, query=query)
        mode = checkpointing_mode(checkpointing)
        if mode != "off":
            self._enable_checkpointing(mode)
        self.prompt = LLAVA_TEMPLATE.format(query=query)
        self.prompt_ids = self._expanded_prompt_ids()
        self._ids: dict[tuple[int, str], Tensor] = {}

    @property
    def image_token_id(self) -> int:
        config = self.model.config
        token = getattr(config, "image_token_id", None)
        return int(token if token is not None else config.image_token_index)

    def image_feature_count(self) -> int:
        """Positions one image occupies: patches (plus CLS with the "full" feature strategy)."""
        vision = self.model.config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        return patches + (1 if self.model.config.vision_feature_select_strategy == "full" else 0)

    def _expanded_prompt_ids(self) -> list[int]:
        ids = bos_prefixed_ids(self.tokenizer, self.prompt)  # as LLaVA-1.5's own code: BOS whatever the config
        check_starts_with_bos(ids, getattr(self.model.config.text_config, "bos_token_id", None), "LLaVA query")
        if ids.count(self.image_token_id) != 1:
            raise ValueError(f"the tokenizer does not turn {LLAVA_IMAGE_TOKEN!r} into the single image token "
                             f"{self.image_token_id} (got ids {ids}); load the tokenizer saved with the llava-hf model")
        at = ids.index(self.image_token_id)
        return ids[:at] + [self.image_token_id] * self.image_feature_count() + ids[at + 1:]

    def _enable_checkpointing(self, mode: str) -> None:
        # transformers only checkpoints layers of modules in training mode; LLaVA has no dropout at inference
        # settings, which is checked so that training mode changes nothing else.
        for name in ("vision_config", "text_config"):
            dropout = getattr(getattr(self.model.config, name), "attention_dropout", 0.0) or 0.0
            if dropout:
                raise ValueError(f"activation checkpointing needs {name}.attention_dropout = 0, got {dropout}")
        vision, language = part_modes(mode)
        parts = [(self.model, mode)] if vision == language else [
            (self.model.model.vision_tower, vision), (self.model.model.language_model, language)]
        for module, part_mode in parts:
            options = checkpoint_options(part_mode)  # transformers hands these to torch.utils.checkpoint.checkpoint
            if hasattr(module, "activation_checkpointing_enable"):  # the name in newer transformers 5.x
                module.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
            else:
                module.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)
        self.model_training_mode = True
        self.model.train(True)

    def input_ids(self, batch_size: int) -> Tensor:
        key = (batch_size, str(self.device))
        if key not in self._ids:
            row = torch.tensor(self.prompt_ids, dtype=torch.long, device=self.device)
            self._ids[key] = row.expand(batch_size, -1).contiguous()
        return self._ids[key]

    def pixel_word_logits(self, pixel_values: Tensor) -> Tensor:
        outputs = self.model.model(input_ids=self.input_ids(pixel_values.shape[0]), pixel_values=pixel_values,
                                   use_cache=False)
        last = outputs.last_hidden_state[:, -1]  # already through the final norm
        return F.linear(last, self.model.lm_head.weight[self.word_ids]).float()


def load_llava_scorer(folder: str | Path, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                      normalisation: str = "clip", score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY,
                      checkpointing: bool | str = False) -> LlavaScorer:
    """LlavaScorer from a local llava-hf folder (config.json, weights, tokenizer files)."""
    from transformers import LlavaForConditionalGeneration

    folder = Path(folder)
    model = LlavaForConditionalGeneration.from_pretrained(str(folder), dtype=dtype).to(device)
    tokenizer = load_tokenizer(folder)
    return LlavaScorer(model, tokenizer, normalisation=normalisation, score_type=score_type, query=query,
                       checkpointing=checkpointing)
