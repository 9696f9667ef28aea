"""Graph breaks on the prompt -> score path at the real mPLUG-Owl2-7B widths (issue 14), on a CPU, in a minute.

torch.compile (`vpkit train --compile`) is fast only if TorchDynamo captures the prompted forward as one graph:
every break is a return to Python, and shapes or code paths that the tiny preset never takes (448 px images,
1,024 vision tokens, 32 heads of 128, LLaMA-2's tokenizer and 32,000 words, the checkpointing modes) could add
some. This builds the released 7B layout with random weights and fewer layers per stack (every layer runs the
same code; --layers sets how many), and asks torch._dynamo.explain how many graphs the compiled call makes, for
training (gradients to the prompt, autocast as `vpkit train` runs it) and for evaluation, in each checkpointing
mode. No weights, no GPU.

    python benchmarks/check_graph_breaks.py                     # 2 layers per stack, every checkpointing mode
    python benchmarks/check_graph_breaks.py --tokenizer tests/fixtures/llama2_tokenizer   # LLaMA-2's ids

Exit status 1 if any setting breaks its graph (the reasons are printed).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpkit.device import autocast
from vpkit.models import MPLUGOwl2Config, MPLUGOwl2ForCausalLM, build_tiny_tokenizer
from vpkit.models.base import load_tokenizer
from vpkit.models.checkpointing import CHECKPOINTING_MODES
from vpkit.models.query import MPLUGOwl2Scorer
from vpkit.prompters import build_prompter


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=2, help="layers in each of vision, abstractor and LLM")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--checkpointing", nargs="+", choices=CHECKPOINTING_MODES, default=list(CHECKPOINTING_MODES))
    parser.add_argument("--amp", choices=("fp16", "bf16", "none"), default="fp16", help="autocast, as train.amp")
    parser.add_argument("--tokenizer", type=Path, help="a folder with LLaMA-2's tokenizer.model (default: vpkit's "
                        "word-level stand-in, which gives a query of similar length)")
    return parser.parse_args(argv)


def seven_b_layout(layers: int) -> MPLUGOwl2Config:
    """The released 7B config (vpkit's defaults) with `layers` layers in each stack."""
    full = MPLUGOwl2Config(source="7B defaults")
    return dataclasses.replace(
        full, num_hidden_layers=layers, source=f"7B widths, {layers} layers per stack",
        vision=dataclasses.replace(full.vision, num_hidden_layers=layers),
        abstractor=dataclasses.replace(full.abstractor, num_hidden_layers=layers))


def llama_tokenizer(folder: Path):
    """vpkit's loader on a checkpoint-like copy of `folder`'s tokenizer.model (as a release folder has it)."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(folder / "tokenizer.model", Path(tmp) / "tokenizer.model")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}))
        return load_tokenizer(Path(tmp))


def explain(scorer: MPLUGOwl2Scorer, batch: int, amp: str, train: bool):
    """torch._dynamo.explain of the compiled call PromptedScorer makes (the layout is built eagerly first)."""
    prompter = build_prompter("padding", 30, "add", image_size=scorer.image_size)
    images = torch.rand(batch, 3, scorer.image_size, scorer.image_size)
    scorer.layout(batch)
    scorer.train(train)

    def prompted(pixels):
        with autocast("cpu", amp):
            return scorer(pixels, prompter)

    with torch.set_grad_enabled(train):
        result = torch._dynamo.explain(prompted)(images)
    torch._dynamo.reset()
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    tokenizer = llama_tokenizer(args.tokenizer) if args.tokenizer else build_tiny_tokenizer()
    config = seven_b_layout(args.layers)
    started = time.perf_counter()
    model = MPLUGOwl2ForCausalLM.random_init(config, dtype="float32", device="cpu", seed=0)
    print(f"built {config.source}: {sum(p.numel() for p in model.parameters()) / 1e6:,.0f} M parameters, "
          f"{config.vision.image_size} px, tokenizer {'LLaMA-2' if args.tokenizer else 'word-level stand-in'} "
          f"({time.perf_counter() - started:.0f} s)")
    failures = 0
    for mode in args.checkpointing:
        scorer = MPLUGOwl2Scorer(model, tokenizer, checkpointing=mode)
        for train in (True, False):
            started = time.perf_counter()
            result = explain(scorer, args.batch, args.amp, train)
            broken = result.graph_count != 1 or result.graph_break_count != 0
            failures += broken
            print(f"checkpointing {mode:9s} {'train' if train else 'eval ':5s} amp {args.amp}: "
                  f"{result.graph_count} graph(s), {result.graph_break_count} break(s), "
                  f"{len(result.ops_per_graph[0]) if result.ops_per_graph else 0} ops in the first "
                  f"({time.perf_counter() - started:.0f} s){'  BROKEN' if broken else ''}")
            for reason in result.break_reasons:
                print(f"    break: {reason.reason}")
    print("no graph breaks" if not failures else f"{failures} setting(s) with graph breaks")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
