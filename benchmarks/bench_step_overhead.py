"""Per-step host overhead of vpkit's training step and evaluation forward, measurable on a CPU.

On a GPU at the paper's batch 4 a step's arithmetic takes a few ms while its fixed cost (Python, the
dispatcher, one kernel launch per aten op, host-device synchronisations) takes hundreds: what matters is how
many ops a step dispatches and how often the host waits for the device. Both depend on the model's depth and
the code, not on its widths, so this builds the released 7B layer counts (24 ViT, 6 abstractor, 32 LLM layers)
with tiny widths and counts, on the CPU:

- aten ops per training step (train.train_one_epoch) and per evaluation batch (evaluate.predict), as the
  marginal count of one more step, so per-epoch work (the end-of-epoch reads) is left out; also the ops that
  are not views (the ones that can launch a kernel on a GPU);
- host syncs per step: aten._local_scalar_dense calls (`.item()`, `float(tensor)`), each of which waits for
  the device on a GPU, and tensors made from Python data (aten.lift_fresh: `torch.tensor(list)`, indexing with
  a list), each a blocking copy to the device when used there (`.cpu()` of CPU tensors is invisible here);
- host ms per step at batch 1, where the tiny widths make the arithmetic small.

    python benchmarks/bench_step_overhead.py                 # batch 1, 448 px
    python benchmarks/bench_step_overhead.py --top 15        # also the most frequent ops of a training step
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vpkit.train as vpkit_train
from vpkit.evaluate import PromptedScorer, predict
from vpkit.models import MPLUGOwl2Config, MPLUGOwl2ForCausalLM, build_tiny_tokenizer
from vpkit.models.mplug_owl2_config import AbstractorConfig, VisionConfig
from vpkit.models.query import MPLUGOwl2Scorer
from vpkit.prompters import build_prompter

SYNC_OP = "aten._local_scalar_dense.default"
FROM_PYTHON_OP = "aten.lift_fresh.default"


class OpCounter(TorchDispatchMode):
    """Counts every aten op dispatched while active, by name."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()
        self.views: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        if func.is_view:
            self.views.add(str(func))
        return func(*args, **(kwargs or {}))


def deep_thin_scorer(image_size: int) -> MPLUGOwl2Scorer:
    """The 7B layer counts and token counts (65 visual tokens, the paper's query) with widths of 32-128."""
    tokenizer = build_tiny_tokenizer()
    patch = 14
    vision = VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=24, num_attention_heads=2,
                          image_size=image_size, patch_size=patch)
    abstractor = AbstractorConfig(num_learnable_queries=64, hidden_size=32, num_hidden_layers=6,
                                  num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                                  grid_size=image_size // patch)
    config = MPLUGOwl2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=32,
                             num_attention_heads=2, vision=vision, abstractor=abstractor, source="7B depth, thin")
    return MPLUGOwl2Scorer(MPLUGOwl2ForCausalLM.random_init(config, seed=0), tokenizer).eval()


def batches(count: int, batch: int, image_size: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=generator),
            "label": torch.rand(batch, generator=generator),
            "name": [f"img{i}_{j}" for j in range(batch)],
        }
        for i in range(count)
    ]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--steps", type=int, default=9, help="timed steps (after one warm-up epoch)")
    parser.add_argument("--amp", choices=("none", "bf16"), default="none")
    parser.add_argument("--scaler", action="store_true", help="a GradScaler as under fp16 (its syncs counted)")
    parser.add_argument("--top", type=int, default=0, help="print the N most frequent ops of a training step")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_flush_denormal(True)  # as vpkit.train does on the CPU
    # The loss is read every LOSS_READ_STEPS steps or LOSS_READ_SECONDS, whichever comes first; slow CPU steps
    # would hit the time rule on every step, so it is switched off to count what a fast (GPU) step does.
    vpkit_train.LOSS_READ_SECONDS = float("inf")
    scorer = deep_thin_scorer(args.image_size)
    prompter = build_prompter("padding", 30, image_size=args.image_size)
    model = PromptedScorer(scorer, prompter)
    optimizer = torch.optim.SGD(prompter.parameters(), lr=60.0)
    scaler = torch.amp.GradScaler("cpu", enabled=args.scaler)
    data = batches(args.steps, args.batch, args.image_size)

    def train_epoch(loader):
        return vpkit_train.train_one_epoch(model, prompter, optimizer, scaler, loader, "cpu", args.amp,
                                           progress=False, max_grad_norm=1.0)

    def eval_epoch(loader):
        return predict(model, loader, "cpu", args.amp, progress=False)

    train_epoch(data[:2])  # warm-up: layouts, allocator, lazy inits
    eval_epoch(data[:2])
    counts, views = {}, set()
    for name, run in (("train", train_epoch), ("eval", eval_epoch)):
        per_length = []
        for length in (1, 2):
            with OpCounter() as counter:
                run(data[:length])
            per_length.append(counter.counts)
            views |= counter.views
        counts[name] = per_length[1] - per_length[0]  # one more step: what every step costs
        counts[name + "_epoch1"] = per_length[0]

    timings = {}  # per step: one-batch epochs, median and fastest (the machine may be shared)
    for name, run in (("train", train_epoch), ("eval", eval_epoch)):
        seconds = []
        for batch in data:
            started = time.perf_counter()
            run([batch])
            seconds.append(time.perf_counter() - started)
        timings[name] = (1000 * statistics.median(seconds), 1000 * min(seconds))

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",) * 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}; 7B depth, tiny widths, batch {args.batch}, {args.image_size} px, "
          f"amp {args.amp}")
    for name, label in (("train", "training step"), ("eval", "evaluation batch")):
        ops = counts[name]
        kernels = sum(count for op, count in ops.items() if op not in views)
        print(f"aten ops per {label}: {sum(ops.values())} ({kernels} not views)")
    for name, label in (("train", "training step"), ("eval", "evaluation batch")):
        print(f"host syncs per {label}: {counts[name][SYNC_OP]} _local_scalar_dense, "
              f"{counts[name][FROM_PYTHON_OP]} lift_fresh (tensors from Python data)")
    print(f"  (a one-step training epoch, its end-of-epoch reads included: {counts['train_epoch1'][SYNC_OP]} "
          f"_local_scalar_dense)")
    for name, label in (("train", "training step"), ("eval", "evaluation batch")):
        median, fastest = timings[name]
        print(f"ms per {label}: {median:.1f} median, {fastest:.1f} fastest of {args.steps} (CPU wall time)")
    if args.top:
        print(f"\nmost frequent ops of a training step (of {sum(counts['train'].values())}):")
        for op, count in counts["train"].most_common(args.top):
            print(f"{count:6d}  {op}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
