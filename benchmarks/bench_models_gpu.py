"""Throughput and peak memory of the mPLUG-Owl2 scorer: forward, and forward + backward to a pixel prompt.

The 7B preset builds the released mPLUG-Owl2-7B shapes with random weights (on `meta`, then materialised on
the device and initialised in place, so no checkpoint is needed and setup takes seconds). The scoring path
is the one training uses: [0, 1] images -> padding prompt -> normalisation -> model -> score-word logits.

    python benchmarks/bench_models_gpu.py                          # 7B, bf16, CUDA, batches 8 16 32
    python benchmarks/bench_models_gpu.py --preset tiny --device cpu
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpkit.models import MPLUGOwl2Config, MPLUGOwl2ForCausalLM, build_tiny_tokenizer, tiny_config
from vpkit.models.query import MPLUGOwl2Scorer
from vpkit.prompters import build_prompter


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("7b", "tiny"), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None,
                        help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations per measurement (after 1 warm-up)")
    parser.add_argument("--modes", nargs="+", default=["forward", "train", "train-checkpointed"],
                        choices=("forward", "train", "train-checkpointed"))
    return parser.parse_args(argv)


def build_scorer(preset: str, dtype: str, device: str) -> MPLUGOwl2Scorer:
    """Random-weight scorer; the small word-level tokenizer stands in for LLaMA's (prompt of similar length)."""
    tokenizer = build_tiny_tokenizer()
    config = MPLUGOwl2Config(source="7B defaults") if preset == "7b" else tiny_config(len(tokenizer))
    model = MPLUGOwl2ForCausalLM.random_init(config, dtype=dtype, device=device, seed=0)
    return MPLUGOwl2Scorer(model, tokenizer)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB RSS (process)"


def measure(scorer: MPLUGOwl2Scorer, mode: str, batch: int, repeats: int) -> tuple[float, str]:
    device = scorer.device
    scorer.model.set_gradient_checkpointing(mode == "train-checkpointed")
    generator = torch.Generator(device=device).manual_seed(batch)
    images = torch.rand(batch, 3, scorer.image_size, scorer.image_size, device=device, generator=generator)
    labels = torch.rand(batch, device=device, generator=generator)
    prompter = build_prompter("padding", size=30, image_size=scorer.image_size).to(device)

    def step() -> None:
        if mode == "forward":
            with torch.no_grad():
                scorer(images)
        else:
            prompter.zero_grad(set_to_none=True)
            torch.nn.functional.mse_loss(scorer(images, prompter), labels).backward()

    reset_peak(device)
    step()  # warm-up (kernel selection, allocator)
    synchronise(device)
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    synchronise(device)
    return batch * repeats / (time.perf_counter() - start), peak_memory(device)


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    args.dtype = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; use --device cpu (with --preset tiny)")
    start = time.perf_counter()
    scorer = build_scorer(args.preset, args.dtype, args.device)
    synchronise(device)
    params = sum(p.numel() for p in scorer.model.parameters())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"preset {args.preset}: {params / 1e6:.1f} M parameters, {args.dtype}, {name}; built in "
          f"{time.perf_counter() - start:.1f} s; image {scorer.image_size} px, "
          f"sequence {scorer.layout(1).text_ids.shape[1]} tokens; torch {torch.__version__}")
    print(f"{'mode':<20}{'batch':>6}{'images/s':>12}  peak memory")
    for mode in args.modes:
        for batch in args.batches:
            try:
                rate, memory = measure(scorer, mode, batch, args.repeats)
                print(f"{mode:<20}{batch:>6}{rate:>12.1f}  {memory}", flush=True)
            except torch.cuda.OutOfMemoryError:
                print(f"{mode:<20}{batch:>6}{'OOM':>12}", flush=True)
                reset_peak(device)


if __name__ == "__main__":
    main()
