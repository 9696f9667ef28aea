"""The paper's quality query as mPLUG-Owl2 is asked it: its conversation template, the image placeholder's ids,
and `MPLUGOwl2Scorer` (the QualityScorer of vpkit.models.base over mPLUG-Owl2 and the tiny same-architecture
models)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from vpkit.scoring import DEFAULT_SCORE_TYPE

from .base import PAPER_QUERY, QualityScorer, bos_id, check_starts_with_bos, load_tokenizer, text_ids
from .mplug_owl2 import IMAGE_TOKEN_INDEX, MPLUGOwl2ForCausalLM, MultimodalLayout

# The paper's exact mPLUG-Owl2 prompt. The conversation template `mplug_owl2` (no system prompt, separator " ")
# renders USER's message "<|image|>" + query and an empty ASSISTANT turn as below: one space after "USER:",
# none after the placeholder, one before "ASSISTANT:", nothing after the colon.
MPLUG_OWL2_IMAGE_TOKEN = "<|image|>"
MPLUG_OWL2_TEMPLATE = "USER: <|image|>{query} ASSISTANT:"
PAPER_PROMPT = "USER: <|image|>Rate the technical quality of the image. ASSISTANT:"


def tokenize_with_image(prompt: str, tokenizer, placeholder: str = MPLUG_OWL2_IMAGE_TOKEN,
                        image_token_id: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """BOS, then the ids of `prompt` with each `placeholder` replaced by `image_token_id` (mPLUG-Owl2's convention).

    Each text chunk between placeholders is tokenised on its own, as the reference's tokenizer_image_token does;
    the reference's tokenizer added a BOS to every chunk and kept only the first chunk's, so the ids are one
    BOS + the chunks' ids without special tokens (see `bos_prefixed_ids` for why BOS is added here).
    """
    if placeholder not in prompt:
        raise ValueError(f"prompt {prompt!r} has no image placeholder {placeholder!r}")
    ids = [bos_id(tokenizer)]
    for index, chunk in enumerate(prompt.split(placeholder)):
        if index:
            ids.append(image_token_id)
        ids.extend(text_ids(tokenizer, chunk))
    return ids


class MPLUGOwl2Scorer(QualityScorer):
    """mPLUG-Owl2 (or the tiny same-architecture models) asked the paper's question."""

    def __init__(self, model: MPLUGOwl2ForCausalLM, tokenizer, *, normalisation: str = "imagenet",
                 score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY, checkpointing: bool | str = False):
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


def load_mplug_owl2_scorer(folder: str | Path, *, dtype: torch.dtype = torch.float32,
                           device: torch.device | str = "cpu", normalisation: str = "imagenet",
                           score_type: str = DEFAULT_SCORE_TYPE, query: str = PAPER_QUERY,
                           checkpointing: bool | str = False) -> MPLUGOwl2Scorer:
    """MPLUGOwl2Scorer from a local mPLUG-Owl2 folder (config.json, weights, tokenizer files)."""
    folder = Path(folder)
    vlm = MPLUGOwl2ForCausalLM.from_pretrained(folder, dtype=dtype, device=device)
    return MPLUGOwl2Scorer(vlm, load_tokenizer(folder), normalisation=normalisation, score_type=score_type,
                           query=query, checkpointing=checkpointing)
