"""What each activation-checkpointing mode keeps for backward, per layer of mPLUG-Owl2-7B, measured on a CPU.

Builds one layer of each kind of the port (vpkit.models.mplug_owl2) at the released 7B widths with random
weights (frozen, as in training the prompt): an LLM decoder layer (hidden 4096, MLP 11008, 32 heads) over the
paper's sequence (5 text tokens, 65 visual, 14 text: the LLaMA-2 tokenisation of the paper's query, 84 in all),
a ViT-L vision layer (1025 tokens x 1024) and a visual-abstractor layer (64 queries over 1025 tokens), at
batch 1 (everything here scales with the batch). For each mode (off / full / selective) it runs the layer the
way the model does (vpkit.models.checkpointing.run_layer) and reports:

- kept MiB: bytes of the tensors the layer's forward created that are still alive after it, i.e. what it
  holds for backward, as the marginal cost of one more layer in a chain (so a layer input that the layer keeps
  counts, and the output that the next layer receives does not). Storages are followed by weak reference from
  a dispatch mode, so tensors kept by the checkpoint machinery (full: the layer input; selective: the saved op
  outputs) count as well as autograd's own saved tensors;
- autograd-saved MiB (off only): the same figure read with torch.autograd.graph.saved_tensors_hooks, as a
  cross-check (checkpointing installs its own hooks, so these hooks see nothing of a checkpointed layer);
- backward peak MiB: the most bytes alive at once during the backward of one layer, over what it kept, i.e. the
  transient of recomputing one layer (plus the gradients of its inputs);
- forward / backward GFLOP (torch.utils.flop_counter, matmuls and attention; the recompute shows up in
  backward) and CPU seconds (median of --repeats; 2 cores here, so only the ratios mean anything).

    python benchmarks/bench_checkpoint_memory.py                 # bf16, as the GPU runs it
    python benchmarks/bench_checkpoint_memory.py --dtype fp32 --kinds decoder
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpkit.models import MPLUGOwl2Config
from vpkit.models.checkpointing import CHECKPOINTING_MODES, LAYER_MODES, PART_MODES, run_layer
from vpkit.models.mplug_owl2 import (
    IMAGE_TOKEN_INDEX,
    LlamaDecoderLayer,
    ModalityRouting,
    MplugOwlVisionEncoderLayer,
    MplugOwlVisualAbstractorLayer,
    RotaryEmbedding,
    build_layout,
)

MIB = 2**20
aten = torch.ops.aten


def _as_counted(cuda_op):
    """torch's FLOP formula of a CUDA attention kernel, for the CPU kernel whose arguments start the same way."""
    def formula(*args, **kwargs):
        return flop_registry[cuda_op](*args, **kwargs)

    formula._get_raw = True  # already takes tensors, as the registry's entries do (FlopCounterMode's convention)
    return formula


# The CPU attention kernels have no FLOP formula in torch.
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: _as_counted(aten._scaled_dot_product_flash_attention),
    aten._scaled_dot_product_flash_attention_for_cpu_backward:
        _as_counted(aten._scaled_dot_product_flash_attention_backward),
}
# The paper's query as LLaMA-2 tokenises it (tests/test_conformance_tokenizer.py): BOS + 4 tokens, the image,
# 14 tokens; the ids themselves do not matter here, only where the image goes.
QUERY_IDS = [1, 1, 1, 1, 1, IMAGE_TOKEN_INDEX, *[1] * 14]


class LiveTensors(TorchDispatchMode):
    """Follows, by weak reference, the storage of every tensor an op returns while active (except `known` ones,
    such as weights and inputs); `alive()` is the bytes of those still referenced anywhere."""

    def __init__(self, known: list[torch.Tensor]):
        super().__init__()
        self.known = {t.untyped_storage().data_ptr() for t in known}
        self.storages: dict[int, tuple[StorageWeakRef, int]] = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._follow(tensor.untyped_storage())
        self.peak = max(self.peak, self.alive())
        return out

    def _follow(self, storage) -> None:
        if storage.nbytes() == 0 or storage.data_ptr() in self.known:
            return
        ref = StorageWeakRef(storage)
        seen = self.storages.get(ref.cdata)
        if seen is None or seen[0].expired():
            self.storages[ref.cdata] = (ref, storage.nbytes())

    def alive(self) -> int:
        return sum(size for ref, size in self.storages.values() if not ref.expired())


def saved_by_autograd(run):
    """(run()'s output, {storage address: bytes} of every tensor autograd saves for backward meanwhile)."""
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = run()
    return output, storages


def build(kind: str, config: MPLUGOwl2Config, dtype: torch.dtype):
    """(layer, inputs that need a gradient, constant inputs, step: (layer, hidden) -> hidden)."""
    generator = torch.Generator().manual_seed(0)

    def activations(*shape):
        return torch.randn(*shape, generator=generator).to(dtype).requires_grad_(True)

    if kind == "decoder":
        layer = LlamaDecoderLayer(config)
        layout = build_layout(torch.tensor([QUERY_IDS]), None, config.num_visual_tokens, config.vocab_size)
        routing = ModalityRouting(layout.modality_indicators.unsqueeze(-1).bool(), layout.text_rows,
                                  layout.visual_rows, layout.modality_runs)
        length = layout.text_ids.shape[1]
        rotary = RotaryEmbedding(config.head_dim, config.rope_theta)(length, dtype)
        hidden = activations(1, length, config.hidden_size)
        return layer, hidden, [*rotary, *routing.__dict__.values()], (
            lambda mode, x: run_layer(layer, mode, x, routing, rotary, None)
        )
    if kind == "vision":
        layer = MplugOwlVisionEncoderLayer(config.vision)
        tokens = (config.vision.image_size // config.vision.patch_size) ** 2 + 1
        return layer, activations(1, tokens, config.vision.hidden_size), [], (
            lambda mode, x: run_layer(layer, mode, x)
        )
    layer = MplugOwlVisualAbstractorLayer(config.abstractor)
    abstractor = config.abstractor
    vision_tokens = activations(1, abstractor.grid_size**2 + 1, abstractor.encoder_hidden_size)
    queries = activations(1, abstractor.num_learnable_queries, abstractor.hidden_size)
    return layer, queries, [vision_tokens], lambda mode, x: run_layer(layer, mode, x, vision_tokens)


def measure(kind: str, mode: str, layer, hidden, constants, step, repeats: int) -> dict:
    known = [*layer.parameters(), *layer.buffers(), hidden, *[c for c in constants if isinstance(c, torch.Tensor)]]

    def kept(layers: int) -> tuple[int, torch.Tensor, LiveTensors]:
        with LiveTensors(known) as live:
            out = hidden
            for _ in range(layers):
                out = step(mode, out)
            after_forward = live.alive()
        return after_forward, out, live

    one, _, _ = kept(1)
    two, _, _ = kept(2)
    row = {"layer": kind, "mode": mode, "kept_mib": (two - one) / MIB}
    # The backward transient of one layer: peak while its backward runs, over what it kept after forward.
    after_forward, out, live = kept(1)
    with live:
        live.peak = 0
        out.backward(torch.ones_like(out))
    row["backward_peak_mib"] = max(0, live.peak - after_forward) / MIB
    hidden.grad = None
    if mode == "off":
        out, storages = saved_by_autograd(lambda: step(mode, hidden))
        known_ptrs = {t.untyped_storage().data_ptr() for t in known}
        row["autograd_saved_mib"] = sum(v for k, v in storages.items() if k not in known_ptrs) / MIB
        del out
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as flops:
        out = step(mode, hidden)
    row["forward_gflop"] = flops.get_total_flops() / 1e9
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as flops:
        out.backward(torch.ones_like(out))
    row["backward_gflop"] = flops.get_total_flops() / 1e9
    hidden.grad = None
    forward_s, backward_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        out = step(mode, hidden)
        forward_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        out.backward(torch.ones_like(out))
        backward_s.append(time.perf_counter() - started)
        hidden.grad = None
    row["forward_s"], row["backward_s"] = statistics.median(forward_s), statistics.median(backward_s)
    return row


def main(argv=None) -> int:
    import pandas as pd

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", choices=("bf16", "fp32"), default="bf16")
    parser.add_argument("--kinds", nargs="+", choices=("decoder", "vision", "abstractor"),
                        default=["decoder", "vision", "abstractor"])
    parser.add_argument("--repeats", type=int, default=3, help="timed forward+backward runs per mode")
    args = parser.parse_args(argv)
    torch.set_flush_denormal(True)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    config = MPLUGOwl2Config(source="7B defaults")
    print(f"torch {torch.__version__}, CPU ({torch.get_num_threads()} threads), {args.dtype}, batch 1, "
          f"7B widths: decoder {config.hidden_size}/{config.intermediate_size}/{config.num_attention_heads} heads, "
          f"vision {config.vision.hidden_size}/{config.vision.intermediate_size}, "
          f"abstractor {config.abstractor.hidden_size}/{config.abstractor.intermediate_size}", flush=True)
    rows = []
    for kind in args.kinds:
        torch.manual_seed(0)
        layer, hidden, constants, step = build(kind, config, dtype)
        layer.to(dtype).requires_grad_(False)
        for mode in LAYER_MODES:
            rows.append(measure(kind, mode, layer, hidden, constants, step, args.repeats))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"),
                  flush=True)
        del layer, hidden, constants, step
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"))
    print("\nWhat each mode buys per layer (measured rows above; recompute = backward GFLOP over mode off):")
    for kind in args.kinds:
        rows_of = table[table["layer"] == kind].set_index("mode")
        off = rows_of.loc["off"]
        for mode in ("full", "selective"):
            saved = off["kept_mib"] - rows_of.loc[mode, "kept_mib"]
            extra = rows_of.loc[mode, "backward_gflop"] - off["backward_gflop"]
            rate = f"{saved / extra:.2f} MiB per GFLOP" if extra > 0.01 else "no matmul or attention recomputed"
            print(f"  {kind} {mode}: keeps {saved:.2f} MiB less for {extra:.2f} GFLOP of recompute ({rate})")
    counts = {"decoder": config.num_hidden_layers, "vision": config.vision.num_hidden_layers,
              "abstractor": config.abstractor.num_hidden_layers}
    print("\nEXTRAPOLATION (arithmetic on the rows above, not measured): kept per image over the layers of the "
          "whole model, then x 32 images; the recompute transient of one layer, the weights and the rest of the "
          "model come on top.")
    measured = table.set_index(["layer", "mode"])
    step = sum(counts[kind] * (measured.loc[(kind, "off"), "forward_gflop"] + measured.loc[(kind, "off"),
                                                                                     "backward_gflop"])
               for kind in args.kinds)
    for mode in CHECKPOINTING_MODES:
        vision, language = PART_MODES[mode]
        chosen = [(kind, language if kind == "decoder" else vision) for kind in args.kinds]
        kept = [(counts[kind], measured.loc[(kind, part), "kept_mib"]) for kind, part in chosen]
        extra = sum(counts[kind] * (measured.loc[(kind, part), "backward_gflop"]
                                    - measured.loc[(kind, "off"), "backward_gflop"]) for kind, part in chosen)
        per_image = sum(n * mib for n, mib in kept)
        print(f"  {mode}: {' + '.join(f'{n} x {mib:.2f}' for n, mib in kept)} = {per_image:.1f} MiB per image; "
              f"x 32 = {32 * per_image / 1024:.2f} GiB; recompute {extra:.0f} GFLOP per image "
              f"(+{100 * extra / step:.0f}% on the {step:.0f} GFLOP of a training step's layers without it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
