"""Activation checkpointing of the frozen model's layers: off, full (recompute each layer in backward),
selective (keep the matmul and attention outputs of each layer, recompute the cheap ops between them) or mixed
(full in the vision encoder and abstractor, selective in the LLM).

The prompt's gradient flows back through every layer of the frozen model, so each layer keeps what its
backward needs. Full checkpointing keeps only each layer's input and runs the layer's forward again in
backward (about one more forward pass of arithmetic). Selective checkpointing
(`torch.utils.checkpoint.create_selective_checkpoint_contexts`) keeps the outputs of the ops listed in
`SAVED_OPS` and recomputes the rest of the layer from them: norms, activations, rotary embedding, casts, adds.

Where recomputing pays differs by part (benchmarks/bench_checkpoint_memory.py, 7B widths, bf16, per image): a
ViT layer keeps 28 MiB for backward and full checkpointing saves 26 of them for 21.5 GFLOP of recompute
(1.2 MiB per GFLOP); an LLM layer keeps 12 MiB and full saves 11 for 26.5 GFLOP (0.4 MiB per GFLOP), while
selective saves 3.7 MiB of it with no matmul recomputed. Hence 'mixed'.
"""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, create_selective_checkpoint_contexts

CHECKPOINTING_MODES = ("off", "full", "selective", "mixed")
LAYER_MODES = ("off", "full", "selective")  # what one layer can do
# mode -> (mode of the vision side: encoder and abstractor layers, mode of the language model's layers)
PART_MODES = {
    "off": ("off", "off"),
    "full": ("full", "full"),
    "selective": ("selective", "selective"),
    "mixed": ("full", "selective"),
}

_aten = torch.ops.aten
# Saved: the ops that hold nearly all of a layer's arithmetic (recomputing a matmul or an attention costs as
# much as its forward did; the attention kernels also return the log-sum-exp their backward needs). Recomputed:
# everything else in the layer (layer/RMS norms and their float32 copies, SiLU / QuickGELU, the MLP's gate
# product, sums, rotary embedding, concatenations): elementwise work, no matmul, rebuilt from the saved outputs.
# With frozen weights the kept matmul outputs are still most of a layer's memory (selective keeps 8.1 of an LLM
# layer's 11.9 MiB per image at 7B widths in bf16), which is why 'mixed' checkpoints the vision side whole.
SAVED_OPS = [
    _aten.mm.default,
    _aten.addmm.default,
    _aten.bmm.default,
    _aten.baddbmm.default,
    _aten._scaled_dot_product_flash_attention.default,
    _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default,
    _aten._scaled_dot_product_flash_attention_for_cpu.default,
]


def checkpointing_mode(value: bool | str | None) -> str:
    """A mode of CHECKPOINTING_MODES from its name or the older on/off flag (True = 'full', False = 'off')."""
    if value is None or value is False:
        return "off"
    if value is True:
        return "full"
    if value not in CHECKPOINTING_MODES:
        raise ValueError(f"checkpointing = {value!r} is not a mode; choose one of: {', '.join(CHECKPOINTING_MODES)}")
    return value


def part_modes(mode: str) -> tuple[str, str]:
    """(vision side, language model) layer modes of a checkpointing mode."""
    return PART_MODES[checkpointing_mode(mode)]


def checkpoint_options(mode: str) -> dict:
    """Keyword arguments of `torch.utils.checkpoint.checkpoint` for a 'full' or 'selective' layer."""
    if mode not in LAYER_MODES[1:]:
        raise ValueError(f"a layer is checkpointed 'full' or 'selective', not {mode!r}")
    options = {"use_reentrant": False}
    if mode == "selective":
        options["context_fn"] = functools.partial(create_selective_checkpoint_contexts, SAVED_OPS)
    return options


def run_layer(layer: nn.Module, mode: str, *args):
    """`layer(*args)`, checkpointed as `mode` says ('off' runs it plainly)."""
    if mode == "off":
        return layer(*args)
    return checkpoint(layer, *args, **checkpoint_options(mode))
