"""mPLUG-Owl2 (LLaMA-2 variant) in plain PyTorch: ViT encoder, visual abstractor, modality-adaptive LLaMA.

Module and parameter names follow the released checkpoint (`MPLUGOwl2LlamaForCausalLM`), so its state dict
maps by name. Attention runs through `torch.nn.functional.scaled_dot_product_attention`.

Sequence convention (as the reference): every image placeholder id (-200) in `input_ids` is replaced by the
image's `num_learnable_queries + 1` visual embeddings (abstractor queries projected to the LLM width, then the
learned end-of-image vector); position ids run 0..T-1 over the expanded sequence; a per-token modality
indicator (1 = visual, 0 = text/padding) routes tokens to copy 1 or copy 0 of k_proj, v_proj and the two
RMSNorms of every LLM layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checkpointing import checkpointing_mode, part_modes, run_layer
from .loading import load_mplug_owl2, resolve_dtype
from .mplug_owl2_config import AbstractorConfig, MPLUGOwl2Config, VisionConfig

IMAGE_TOKEN_INDEX = -200
# Position tables are persistent buffers in the reference (so they appear in its state dict) but can be
# recomputed from the config; rotary inverse frequencies are always recomputed here.
COMPUTED_BUFFER_SUFFIXES = ("q_pos_embed", "k_pos_embed")
IGNORED_CHECKPOINT_SUFFIXES = ("rotary_emb.inv_freq",)


# ===================================================================== sine-cosine position tables
def sincos_table_1d(width: int, positions: np.ndarray) -> np.ndarray:
    """MAE-style table: row p = [sin(p * w), cos(p * w)], w_j = 1 / 10000^(j / (width/2)).

    Computed in numpy float32 like the reference, so recomputed tables match stored ones bit for bit.
    """
    omega = np.arange(width // 2, dtype=np.float32) / np.float32(width / 2.0)
    omega = np.float32(1.0) / np.float32(10000.0) ** omega
    angles = np.einsum("m,d->md", positions.reshape(-1).astype(np.float32), omega)
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)


def query_position_table(num_queries: int, width: int) -> Tensor:
    return torch.from_numpy(sincos_table_1d(width, np.arange(num_queries, dtype=np.float32))).float()


def key_position_table(grid_size: int, width: int) -> Tensor:
    """Zero CLS row, then grid^2 rows (row-major): [1-D table at the column index, 1-D table at the row index]."""
    rows, cols = np.meshgrid(np.arange(grid_size, dtype=np.float32), np.arange(grid_size, dtype=np.float32),
                             indexing="ij")
    patches = np.concatenate([sincos_table_1d(width // 2, cols), sincos_table_1d(width // 2, rows)], axis=1)
    return torch.from_numpy(np.concatenate([np.zeros((1, width), dtype=np.float32), patches], axis=0)).float()


# ===================================================================== vision encoder
def quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


VISION_ACTIVATION_FUNCTIONS = {"quick_gelu": quick_gelu, "gelu": F.gelu}


class MplugOwlVisionEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.image_size, self.patch_size = config.image_size, config.patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.patch_embed = nn.Conv2d(config.num_channels, config.hidden_size, kernel_size=config.patch_size,
                                     stride=config.patch_size, bias=False)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.num_positions, config.hidden_size))
        self.pre_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: Tensor) -> Tensor:
        if pixel_values.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"pixel_values are {tuple(pixel_values.shape[-2:])} but this vision encoder takes "
                             f"{self.image_size}x{self.image_size} images (its position table is not interpolated); "
                             "resize the images first")
        # Non-overlapping patches: the conv is a matmul over flattened patches (row-major), which is much
        # cheaper than a strided conv's backward when gradients flow to the pixels.
        batch, channels, height, width = pixel_values.shape
        size = self.patch_size
        rows, cols = height // size, width // size
        flat = pixel_values.reshape(batch, channels, rows, size, cols, size)
        flat = flat.permute(0, 2, 4, 1, 3, 5).reshape(batch, rows * cols, channels * size * size)
        patches = F.linear(flat, self.patch_embed.weight.flatten(1))
        cls = self.cls_token.expand(patches.shape[0], 1, -1).to(patches.dtype)
        tokens = torch.cat([cls, patches], dim=1)
        tokens = tokens + self.position_embedding[:, : tokens.shape[1]].to(patches.dtype)
        return self.pre_layernorm(tokens)


class MplugOwlVisionAttention(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        batch, length, width = hidden.shape
        # The fused projection is laid out per head: [heads, (q, k, v), head_dim].
        qkv = self.query_key_value(hidden).reshape(batch, length, self.num_heads, 3, width // self.num_heads)
        query, key, value = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        context = F.scaled_dot_product_attention(query, key, value)
        return self.dense(context.transpose(1, 2).reshape(batch, length, width))


class MplugOwlMLP(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.activation = VISION_ACTIVATION_FUNCTIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.fc2(self.activation(self.fc1(hidden)))


class MplugOwlVisionEncoderLayer(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.self_attn = MplugOwlVisionAttention(config)
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = MplugOwlMLP(config)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden))
        return hidden + self.mlp(self.post_attention_layernorm(hidden))


class MplugOwlVisionEncoder(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(MplugOwlVisionEncoderLayer(config) for _ in range(config.num_hidden_layers))


class MplugOwlVisionModel(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.embeddings = MplugOwlVisionEmbeddings(config)
        self.encoder = MplugOwlVisionEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: Tensor, checkpointing: str = "off") -> Tensor:
        """All tokens (CLS first, then patches row-major) after the final LayerNorm."""
        hidden = self.embeddings(pixel_values)
        for layer in self.encoder.layers:
            hidden = run_layer(layer, checkpointing, hidden)
        return self.post_layernorm(hidden)


# ===================================================================== visual abstractor
class MplugOwlVisualAbstractorMultiHeadAttention(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.value = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.register_buffer("q_pos_embed", query_position_table(config.num_learnable_queries, config.hidden_size))
        self.register_buffer("k_pos_embed", key_position_table(config.grid_size, config.hidden_size))

    def reset_position_tables(self, num_queries: int, grid_size: int, device: torch.device | None = None) -> None:
        width = self.query.in_features
        self.q_pos_embed = query_position_table(num_queries, width).to(device)
        self.k_pos_embed = key_position_table(grid_size, width).to(device)

    def forward(self, queries: Tensor, keys_values: Tensor) -> Tensor:
        """`queries`: normalised queries [B, Q, D]; `keys_values`: [normalised queries; normalised vision tokens]."""
        dtype = queries.dtype
        q_pos = self.q_pos_embed.to(dtype)
        key_pos = torch.cat([q_pos, self.k_pos_embed.to(dtype)], dim=0)
        query = self._heads(self.query(queries + q_pos))
        key = self._heads(self.key(keys_values + key_pos))
        value = self._heads(self.value(keys_values))
        context = F.scaled_dot_product_attention(query, key, value)
        return context.transpose(1, 2).flatten(2)

    def _heads(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)


class MplugOwlVisualAbstractorMLP(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.w1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.w2 = nn.Linear(config.intermediate_size, config.hidden_size)
        self.w3 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_ln = nn.LayerNorm(config.intermediate_size, eps=config.layer_norm_eps)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.w2(self.ffn_ln(F.silu(self.w1(hidden)) * self.w3(hidden)))


class MplugOwlVisualAbstractorCrossOutput(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.out_proj = nn.Linear(config.encoder_hidden_size, config.encoder_hidden_size)
        self.norm2 = nn.LayerNorm(config.encoder_hidden_size)  # PyTorch default eps (1e-5), as the reference
        self.mlp = MplugOwlVisualAbstractorMLP(config)

    def forward(self, context: Tensor, residual: Tensor) -> Tensor:
        hidden = residual + self.out_proj(context)
        return hidden + self.mlp(self.norm2(hidden))


class MplugOwlVisualAbstractorAttention(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.attention = MplugOwlVisualAbstractorMultiHeadAttention(config)
        self.output = MplugOwlVisualAbstractorCrossOutput(config)
        self.norm1 = nn.LayerNorm(config.encoder_hidden_size)  # default eps 1e-5, as the reference
        self.normk = nn.LayerNorm(config.encoder_hidden_size)

    def forward(self, queries: Tensor, vision_tokens: Tensor) -> Tensor:
        queries = self.norm1(queries)
        keys_values = torch.cat([queries, self.normk(vision_tokens)], dim=1)
        # The residual is the *normalised* query, as in the reference.
        return self.output(self.attention(queries, keys_values), queries)


class MplugOwlVisualAbstractorLayer(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.crossattention = MplugOwlVisualAbstractorAttention(config)

    def forward(self, queries: Tensor, vision_tokens: Tensor) -> Tensor:
        return self.crossattention(queries, vision_tokens)


class MplugOwlVisualAbstractorEncoder(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.layers = nn.ModuleList(MplugOwlVisualAbstractorLayer(config) for _ in range(config.num_hidden_layers))


class MplugOwlVisualAbstractorModel(nn.Module):
    def __init__(self, config: AbstractorConfig, language_hidden_size: int):
        super().__init__()
        self.encoder = MplugOwlVisualAbstractorEncoder(config)
        self.visual_fc = nn.Linear(config.hidden_size, language_hidden_size)
        self.query_embeds = nn.Parameter(torch.zeros(1, config.num_learnable_queries, config.hidden_size))
        self.vit_eos = nn.Parameter(torch.zeros(1, 1, language_hidden_size))

    def forward(self, vision_tokens: Tensor, checkpointing: str = "off") -> Tensor:
        """[B, Q + 1, D_llm]: the projected queries followed by the end-of-image vector."""
        batch = vision_tokens.shape[0]
        queries = self.query_embeds.to(vision_tokens.dtype).expand(batch, -1, -1)
        for layer in self.encoder.layers:
            queries = run_layer(layer, checkpointing, queries, vision_tokens)
        projected = self.visual_fc(queries)
        return torch.cat([projected, self.vit_eos.to(projected.dtype).expand(batch, -1, -1)], dim=1)


# ===================================================================== modality-adaptive LLaMA
@dataclass
class ModalityRouting:
    """Per-token modality, prepared once per forward and shared by every layer."""

    is_visual: Tensor  # [B, T, 1] bool
    text_rows: Tensor  # flat row indices (B*T) of text tokens
    visual_rows: Tensor  # flat row indices of visual tokens
    runs: tuple[tuple[int, int], ...] | None = None  # see MultimodalLayout.modality_runs

    @staticmethod
    def rows(indicators: Tensor) -> tuple[Tensor, Tensor]:
        """(text rows, visual rows) of the flattened [B, T] indicators. Data-dependent shapes, so it runs when
        the layout is built, not in the forward pass (it would break a torch.compile graph there)."""
        flat = indicators.reshape(-1)
        return (flat == 0).nonzero().squeeze(1), (flat == 1).nonzero().squeeze(1)

    @staticmethod
    def shared_runs(modality: list[list[int]]) -> tuple[tuple[int, int], ...] | None:
        """(length, modality) of each run of equal modality along the sequence when every row has the same
        pattern (a batch of one query: text, image, text), else None."""
        first = modality[0] if modality else []
        if not first or any(row != first for row in modality):
            return None
        runs, start = [], 0
        for position in range(1, len(first) + 1):
            if position == len(first) or first[position] != first[start]:
                runs.append((position - start, first[start]))
                start = position
        return tuple(runs)


class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = eps

    def normalise(self, hidden: Tensor) -> Tensor:
        """Unscaled RMS normalisation in float32, returned in the input dtype (as HF LLaMA)."""
        as_float = hidden.float()
        return (as_float * torch.rsqrt(as_float.pow(2).mean(-1, keepdim=True) + self.eps)).to(hidden.dtype)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.weight * self.normalise(hidden)


class MultiwayRMSNorm(nn.Module):
    """Two RMSNorm copies (`multiway.0` text, `multiway.1` visual): one normalisation, per-token scale."""

    def __init__(self, hidden_size: int, eps: float):
        super().__init__()
        self.multiway = nn.ModuleList(LlamaRMSNorm(hidden_size, eps) for _ in range(2))

    def forward(self, hidden: Tensor, routing: ModalityRouting) -> Tensor:
        text_norm, visual_norm = self.multiway
        scale = torch.where(routing.is_visual, visual_norm.weight, text_norm.weight)
        return scale * text_norm.normalise(hidden)


class MultiwayLinear(nn.Module):
    """Two Linear copies (`multiway.0` text, `multiway.1` visual), each applied only to its own tokens."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.multiway = nn.ModuleList(nn.Linear(in_features, out_features, bias=bias) for _ in range(2))

    def forward(self, hidden: Tensor, routing: ModalityRouting) -> Tensor:
        batch, length, _ = hidden.shape
        if routing.runs is not None:  # spans shared by every row: split, one matmul per span, cat (no scatter)
            pieces = hidden.split([span for span, _ in routing.runs], dim=1)
            # 2-D inputs: a bias-free Linear on a strided 3-D slice would take matmul's slower batched path
            projected = [self.multiway[kind](piece.reshape(-1, piece.shape[-1])).view(batch, piece.shape[1], -1)
                         for piece, (_, kind) in zip(pieces, routing.runs)]
            return torch.cat(projected, dim=1)
        flat = hidden.reshape(batch * length, -1)
        text_proj, visual_proj = self.multiway
        out = flat.new_empty(batch * length, text_proj.out_features)
        out = out.index_copy(0, routing.text_rows, text_proj(flat[routing.text_rows]))
        out = out.index_copy(0, routing.visual_rows, visual_proj(flat[routing.visual_rows]))
        return out.view(batch, length, -1)


class RotaryEmbedding(nn.Module):
    """Rotate-half RoPE; inverse frequencies 1 / theta^(2j / head_dim), cos/sin computed in float32."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        self.head_dim, self.theta = head_dim, theta
        self.register_buffer("inv_freq", self._inverse_frequencies(), persistent=False)

    def _inverse_frequencies(self, device: torch.device | None = None) -> Tensor:
        exponents = torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim
        return 1.0 / (self.theta**exponents)

    def reset(self, device: torch.device | None = None) -> None:
        self.inv_freq = self._inverse_frequencies(device)

    def forward(self, length: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        positions = torch.arange(length, device=self.inv_freq.device, dtype=torch.float32)
        angles = torch.outer(positions, self.inv_freq.float())
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def _apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return x * cos + _rotate_half(x) * sin


class LlamaAttention(nn.Module):
    def __init__(self, config: MPLUGOwl2Config):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = (config.num_attention_heads, config.num_key_value_heads,
                                                            config.head_dim)
        width, kv_width, bias = config.hidden_size, config.num_key_value_heads * config.head_dim, config.attention_bias
        self.q_proj = nn.Linear(width, width, bias=bias)
        self.k_proj = MultiwayLinear(width, kv_width, bias)
        self.v_proj = MultiwayLinear(width, kv_width, bias)
        self.o_proj = nn.Linear(width, width, bias=bias)

    def forward(self, hidden: Tensor, routing: ModalityRouting, rotary: tuple[Tensor, Tensor],
                mask: Tensor | None) -> Tensor:
        batch, length, width = hidden.shape
        query = self.q_proj(hidden).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        key = self.k_proj(hidden, routing).view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        value = self.v_proj(hidden, routing).view(batch, length, self.num_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = rotary
        query, key = _apply_rotary(query, cos, sin), _apply_rotary(key, cos, sin)
        if self.num_kv_heads != self.num_heads:
            repeats = self.num_heads // self.num_kv_heads
            key, value = key.repeat_interleave(repeats, dim=1), value.repeat_interleave(repeats, dim=1)
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, is_causal=mask is None)
        return self.o_proj(context.transpose(1, 2).reshape(batch, length, width))


class LlamaMLP(nn.Module):
    def __init__(self, config: MPLUGOwl2Config):
        super().__init__()
        self.gate_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.up_proj = nn.Linear(config.hidden_size, config.intermediate_size, bias=False)
        self.down_proj = nn.Linear(config.intermediate_size, config.hidden_size, bias=False)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(hidden)) * self.up_proj(hidden))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config: MPLUGOwl2Config):
        super().__init__()
        self.self_attn = LlamaAttention(config)
        self.mlp = LlamaMLP(config)
        self.input_layernorm = MultiwayRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = MultiwayRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, hidden: Tensor, routing: ModalityRouting, rotary: tuple[Tensor, Tensor],
                mask: Tensor | None) -> Tensor:
        hidden = hidden + self.self_attn(self.input_layernorm(hidden, routing), routing, rotary, mask)
        return hidden + self.mlp(self.post_attention_layernorm(hidden, routing))


# ===================================================================== multimodal sequence layout
@dataclass
class MultimodalLayout:
    """Where text and visual embeddings go in the expanded sequence (depends on the ids only, so cacheable)."""

    text_ids: Tensor  # [B, T] token ids at text positions, 0 elsewhere
    modality_indicators: Tensor  # [B, T] 1 visual, 0 text / padding
    attention_mask: Tensor  # [B, T] expanded key mask
    image_rows: Tensor  # [B, T] row into the flattened image features at visual positions, 0 elsewhere
    filler: Tensor  # [B, T] bool: alignment padding added when samples expand to different lengths
    num_images: int
    # Decided here, from the ids, so that the forward pass never branches on a tensor's value nor makes a tensor
    # of data-dependent size (each a graph break under torch.compile).
    has_padding: bool
    text_rows: Tensor  # flat (B*T) row indices of text tokens
    visual_rows: Tensor  # flat row indices of visual tokens
    # (length, modality) of the runs along the sequence when every row shares them (the paper's query: text, 65
    # visual, text), so the modality-adaptive projections slice spans instead of gathering and scattering rows.
    modality_runs: tuple[tuple[int, int], ...] | None = None

    def to(self, device: torch.device | str) -> MultimodalLayout:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return MultimodalLayout(**{k: v.to(device) if isinstance(v, Tensor) else v for k, v in moved.items()})

    @property
    def last_positions(self) -> Tensor:
        """Index of the last attended position of each sample (right padding aware)."""
        length = self.attention_mask.shape[1]
        positions = torch.arange(length, device=self.attention_mask.device).expand_as(self.attention_mask)
        return torch.where(self.attention_mask.bool(), positions, -1).amax(dim=1).clamp(min=0)


def build_layout(input_ids: Tensor, attention_mask: Tensor | None, tokens_per_image: int,
                 vocab_size: int) -> MultimodalLayout:
    """Expand each -200 placeholder into `tokens_per_image` visual positions (one image per placeholder, in order).

    The mask keeps each text token's own value and is 1 at visual positions; with right padding (or none) this
    equals the reference's "prepend ones" expansion.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [batch, length], got shape {tuple(input_ids.shape)}")
    ids = input_ids.tolist()
    mask = attention_mask.tolist() if attention_mask is not None else [[1] * len(row) for row in ids]
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape "
                         f"{tuple(input_ids.shape)}")
    rows, image_index = [], 0
    for sample, (row_ids, row_mask) in enumerate(zip(ids, mask)):
        text, modality, keep, image_rows = [], [], [], []
        for token, attend in zip(row_ids, row_mask):
            if token == IMAGE_TOKEN_INDEX:
                start = image_index * tokens_per_image
                text += [0] * tokens_per_image
                modality += [1] * tokens_per_image
                keep += [1] * tokens_per_image
                image_rows += range(start, start + tokens_per_image)
                image_index += 1
            elif 0 <= token < vocab_size:
                text.append(token)
                modality.append(0)
                keep.append(int(attend))
                image_rows.append(0)
            else:
                raise ValueError(f"input_ids[{sample}] holds id {token}: ids must be in [0, {vocab_size}) or the "
                                 f"image placeholder {IMAGE_TOKEN_INDEX}")
        rows.append((text, modality, keep, image_rows))
    length = max(len(r[0]) for r in rows)

    def padded(index: int, fill: int) -> Tensor:
        return torch.tensor([r[index] + [fill] * (length - len(r[index])) for r in rows], dtype=torch.long)

    filler = torch.tensor([[False] * len(r[0]) + [True] * (length - len(r[0])) for r in rows])
    modality, key_mask = padded(1, 0), padded(2, 0)
    text_rows, visual_rows = ModalityRouting.rows(modality)
    return MultimodalLayout(padded(0, 0), modality, key_mask, padded(3, 0), filler, image_index,
                            has_padding=not bool(key_mask.all()), text_rows=text_rows, visual_rows=visual_rows,
                            modality_runs=ModalityRouting.shared_runs(modality.tolist()))


# ===================================================================== model
@dataclass
class MPLUGOwl2Output:
    """Logits plus the intermediates a conformance check compares."""

    logits: Tensor  # [B, T, vocab] float32
    vision_hidden_state: Tensor  # [N_images, 1 + grid^2, D_vision]
    image_features: Tensor  # [N_images, Q + 1, D_llm]
    inputs_embeds: Tensor  # [B, T, D_llm]
    modality_indicators: Tensor  # [B, T]
    attention_mask: Tensor  # [B, T] expanded


class MPLUGOwl2Model(nn.Module):
    """The `model.` prefix of the checkpoint: LLM body plus the vision modules."""

    def __init__(self, config: MPLUGOwl2Config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = LlamaRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.vision_model = MplugOwlVisionModel(config.vision)
        self.visual_abstractor = MplugOwlVisualAbstractorModel(config.abstractor, config.hidden_size)
        self.rotary_emb = RotaryEmbedding(config.head_dim, config.rope_theta)


class MPLUGOwl2ForCausalLM(nn.Module):
    """mPLUG-Owl2 with the LLaMA-2 LLM; `from_pretrained` loads the released checkpoint layout."""

    # What the checkpoint loader (vpkit.models.loading) may find missing, and what it skips.
    computed_buffer_suffixes = COMPUTED_BUFFER_SUFFIXES
    ignored_checkpoint_suffixes = IGNORED_CHECKPOINT_SUFFIXES

    def __init__(self, config: MPLUGOwl2Config):
        super().__init__()
        self.config = config
        self.model = MPLUGOwl2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.gradient_checkpointing = "off"  # or "full" / "selective": vpkit.models.checkpointing

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: torch.dtype | str = torch.float32,
                        device: torch.device | str = "cpu", progress: bool = True) -> MPLUGOwl2ForCausalLM:
        """Read `config.json` and the weights (any shipped layout) from a local folder, without a random copy."""
        return load_mplug_owl2(cls, path, dtype=dtype, device=device, progress=progress)

    @classmethod
    def random_init(cls, config: MPLUGOwl2Config, *, dtype: torch.dtype | str = torch.float32,
                    device: torch.device | str = "cpu", seed: int = 0) -> MPLUGOwl2ForCausalLM:
        """A randomly initialised model built on `meta` and materialised in place (fast, also for 7B sizes)."""
        with torch.device("meta"):
            model = cls(config)
        model.to(resolve_dtype(dtype))  # on meta: free, so the device only ever holds the target dtype
        model.to_empty(device=device)
        model.init_random_weights_(seed)
        model.reset_computed_buffers()
        return model.eval()

    @torch.no_grad()
    def init_random_weights_(self, seed: int) -> None:
        """Deterministic well-scaled init (the golden recipe): visiting parameters in sorted name order,
        biases 0.1 N, norm scales 1 + 0.2 N, matrices N / sqrt(fan_in), other tensors 0.5 N."""
        device = next(self.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        for name, param in sorted(self.named_parameters()):
            noise = torch.empty(param.shape, dtype=torch.float32, device=device).normal_(generator=generator)
            if name.endswith(".bias"):
                noise.mul_(0.1)
            elif name.endswith(".weight") and param.dim() == 1:
                noise.mul_(0.2).add_(1.0)
            elif name.endswith(".weight"):
                noise.div_(math.sqrt(math.prod(param.shape[1:])))
            else:
                noise.mul_(0.5)
            param.copy_(noise)

    def reset_computed_buffers(self, *, only_missing: bool = False) -> None:
        """(Re)compute the rotary frequencies and, unless loaded (`only_missing`), the abstractor position tables."""
        device = self.lm_head.weight.device
        self.model.rotary_emb.reset(device)
        abstractor = self.config.abstractor
        for layer in self.model.visual_abstractor.encoder.layers:
            attention = layer.crossattention.attention
            if not only_missing or attention.q_pos_embed.is_meta or attention.k_pos_embed.is_meta:
                attention.reset_position_tables(abstractor.num_learnable_queries, abstractor.grid_size, device)

    def set_gradient_checkpointing(self, mode: bool | str = True) -> MPLUGOwl2ForCausalLM:
        """Recompute each layer's activations in backward (memory-lean training): 'full' (True), 'selective'
        (matmul and attention outputs kept), 'mixed' (full on the vision side, selective in the LLM) or 'off'
        (False); see vpkit.models.checkpointing."""
        self.gradient_checkpointing = checkpointing_mode(mode)
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    # ----------------------------------------------------------------- pieces
    def _checkpointing_now(self, part: str) -> str:
        """The layer mode of `part` ('vision': encoder and abstractor, 'language': LLM); off without gradients."""
        vision, language = part_modes(self.gradient_checkpointing)
        if not torch.is_grad_enabled():
            return "off"
        return vision if part == "vision" else language

    def vision_hidden_state(self, pixel_values: Tensor) -> Tensor:
        return self.model.vision_model(pixel_values.to(self.dtype), self._checkpointing_now("vision"))

    def encode_images(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        """(vision encoder output, image features [N, Q + 1, D_llm])."""
        vision = self.vision_hidden_state(pixel_values)
        return vision, self.model.visual_abstractor(vision, self._checkpointing_now("vision"))

    def prepare_layout(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> MultimodalLayout:
        layout = build_layout(input_ids, attention_mask, self.config.num_visual_tokens, self.config.vocab_size)
        return layout.to(self.device)

    def embed_multimodal(self, layout: MultimodalLayout, image_features: Tensor) -> Tensor:
        """Text embeddings with the image features written at the visual positions."""
        if image_features.shape[0] != layout.num_images:
            raise ValueError(f"input_ids hold {layout.num_images} image placeholder(s) ({IMAGE_TOKEN_INDEX}) but "
                             f"{image_features.shape[0]} image(s) were given; pass one image per placeholder")
        text = self.model.embed_tokens(layout.text_ids)
        if layout.num_images == 0:
            return text.masked_fill(layout.filler.unsqueeze(-1), 0.0)
        visual = image_features.reshape(-1, image_features.shape[-1])[layout.image_rows].to(text.dtype)
        embeds = torch.where(layout.modality_indicators.unsqueeze(-1).bool(), visual, text)
        return embeds.masked_fill(layout.filler.unsqueeze(-1), 0.0)

    def _attention_bias(self, layout: MultimodalLayout, dtype: torch.dtype) -> Tensor | None:
        """None (plain causal SDPA) without padding; else an additive causal + key-padding mask.

        Masked entries get the dtype's most negative finite value rather than -inf, as the reference, so a
        query row with no valid key (left padding) stays finite.
        """
        if not layout.has_padding:
            return None
        key_mask = layout.attention_mask
        length = key_mask.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=key_mask.device).tril()
        allowed = causal.unsqueeze(0) & key_mask.bool()[:, None, :]
        bias = torch.zeros(allowed.shape, dtype=dtype, device=key_mask.device)
        return bias.masked_fill(~allowed, torch.finfo(dtype).min).unsqueeze(1)

    def decode(self, inputs_embeds: Tensor, layout: MultimodalLayout) -> Tensor:
        """LLM layers over the expanded sequence; hidden states before the final norm."""
        routing = ModalityRouting(layout.modality_indicators.unsqueeze(-1).bool(), layout.text_rows, layout.visual_rows,
                                  layout.modality_runs)
        rotary = self.model.rotary_emb(inputs_embeds.shape[1], inputs_embeds.dtype)
        mask = self._attention_bias(layout, inputs_embeds.dtype)
        hidden = inputs_embeds
        checkpointing = self._checkpointing_now("language")
        for layer in self.model.layers:
            hidden = run_layer(layer, checkpointing, hidden, routing, rotary, mask)
        return hidden

    # ----------------------------------------------------------------- entry points
    def forward(self, input_ids: Tensor, pixel_values: Tensor, attention_mask: Tensor | None = None, *,
                layout: MultimodalLayout | None = None) -> MPLUGOwl2Output:
        """Full-sequence logits (float32) as the reference computes them, with intermediates."""
        layout = layout if layout is not None else self.prepare_layout(input_ids, attention_mask)
        vision, features = self.encode_images(pixel_values)
        embeds = self.embed_multimodal(layout, features)
        hidden = self.model.norm(self.decode(embeds, layout))
        return MPLUGOwl2Output(self.lm_head(hidden).float(), vision, features, embeds,
                               layout.modality_indicators, layout.attention_mask)

    def last_token_logits(self, input_ids: Tensor | None, pixel_values: Tensor, vocab_rows: Tensor | None = None,
                          attention_mask: Tensor | None = None, *, layout: MultimodalLayout | None = None) -> Tensor:
        """float32 [B, K] next-token logits at each sample's last position, only for `vocab_rows` (all if None).

        The final norm and the output projection touch one position and K vocabulary rows only.
        """
        if layout is None:
            if input_ids is None:
                raise ValueError("give input_ids or a prepared layout")
            layout = self.prepare_layout(input_ids, attention_mask)
        _, features = self.encode_images(pixel_values)
        hidden = self.decode(self.embed_multimodal(layout, features), layout)
        batch_index = torch.arange(hidden.shape[0], device=hidden.device)
        last = self.model.norm(hidden[batch_index, layout.last_positions])
        weight = self.lm_head.weight if vocab_rows is None else self.lm_head.weight[vocab_rows]
        return F.linear(last, weight).float()
