"""How long a fresh process takes to reach the end of its first compiled training step, with an empty and then
with a warm compile cache (vpkit.compile_cache): the warm-up every experiment of `vpkit reproduce` pays.

Starts the same child process twice (or as often as --runs says) on one cache folder, empty at first. The
child does what `vpkit train --compile` does up to its first step: import vpkit, build the scorer (random
weights; --preset 7b is the released mPLUG-Owl2-7B shapes), wrap it in a compiled PromptedScorer (which points
torch at the cache folder), run one training step (train.train_one_epoch on one batch) and one evaluation batch
(evaluate.predict, another graph). Times are wall seconds since the parent started the child, so interpreter
start and imports count; the child also reports torch's cache counters (FX-graph and AOTAutograd hits/misses).

    python benchmarks/bench_compile_cache.py --preset tiny --device cpu        # the CPU check
    python benchmarks/bench_compile_cache.py                                   # 7B shapes on CUDA, batch 4
    python benchmarks/bench_compile_cache.py --cache-dir /shared/cc --runs warm   # time an existing cache
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("7b", "tiny"), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=4, help="training and evaluation batch (default 4)")
    parser.add_argument("--cache-dir", help="the compile cache folder (default: a new empty temporary folder)")
    parser.add_argument("--runs", nargs="+", default=["cold", "warm"], help="labels, one fresh process each")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--started", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(args: argparse.Namespace) -> None:
    """One fresh process: build, compile, one training step, one evaluation batch; prints a JSON line."""
    marks = {}

    def mark(name: str) -> None:
        marks[name] = round(time.time() - args.started, 2)

    import torch
    from torch._dynamo.utils import counters

    import vpkit.train  # noqa: F401  (the import cost of a real run)
    mark("imported_s")
    from bench_train import build_scorer, synthetic_batches

    from vpkit.config import ModelConfig, TrainConfig
    from vpkit.evaluate import PromptedScorer, predict
    from vpkit.prompters import build_prompter
    from vpkit.train import deterministic_kernels, train_one_epoch

    cuda = args.device.startswith("cuda")
    train_defaults, model_defaults = TrainConfig(), ModelConfig()
    dtype = model_defaults.dtype if cuda else "fp32"  # what `vpkit train` runs with no flags
    amp = train_defaults.amp if cuda else "none"
    if not cuda:
        torch.set_flush_denormal(True)
    scorer = build_scorer(args.preset, dtype, args.device, checkpointing=False)
    mark("model_built_s")
    prompter = build_prompter("padding", size=scaled_size(scorer.image_size), image_size=scorer.image_size)
    prompter.to(args.device)
    model = PromptedScorer(scorer, prompter, compile_model=True, compile_cache_dir=args.cache_dir)
    optimizer = torch.optim.SGD(prompter.parameters(), lr=60.0)
    scaler = torch.amp.GradScaler(torch.device(args.device).type, enabled=amp == "fp16")
    batches = synthetic_batches(1, args.batch, scorer.image_size, pin=cuda)
    with deterministic_kernels(args.device, train_defaults.deterministic):
        train_one_epoch(model, prompter, optimizer, scaler, batches, args.device, amp, progress=False,
                        max_grad_norm=train_defaults.max_grad_norm)
        if cuda:
            torch.cuda.synchronize()
        mark("first_train_step_s")
        predict(model, batches, args.device, amp, progress=False)
        mark("first_eval_batch_s")
    cache = {**counters["inductor"], **counters["aot_autograd"]}
    names = ("fxgraph_cache_hit", "fxgraph_cache_miss", "autograd_cache_hit", "autograd_cache_miss")
    print("RESULT " + json.dumps({**marks, **{name: cache.get(name, 0) for name in names}}), flush=True)


def scaled_size(image_size: int) -> int:
    from vpkit.config import PAPER_IMAGE_SIZE, scaled_prompt_size

    return scaled_prompt_size(30, PAPER_IMAGE_SIZE, image_size)  # the paper's 30 px padding


def run_child(args: argparse.Namespace, cache_dir: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--preset", args.preset, "--device",
               args.device, "--batch", str(args.batch), "--cache-dir", cache_dir]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # the folder comes from --cache-dir, as train.compile_cache_dir
    started = time.time()
    done = subprocess.run([*command, "--started", str(started)], capture_output=True, text=True, env=env,
                          check=False)
    wall = time.time() - started
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not results:
        raise SystemExit(f"the child process failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return {**json.loads(results[-1].removeprefix("RESULT ")), "process_wall_s": round(wall, 2)}


def main(argv=None) -> int:
    import pandas as pd

    args = parse_args(argv)
    if args.child:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="vpkit-compile-cache-") as scratch:
        cache_dir = args.cache_dir or scratch
        print(f"compile cache folder: {cache_dir}; {args.preset} on {args.device}, batch {args.batch}", flush=True)
        rows = []
        for label in args.runs:
            rows.append({"run": label, **run_child(args, cache_dir)})
            print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
        files = sum(1 for path in Path(cache_dir).rglob("*") if path.is_file())
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False))
    print(f"(times: seconds since the parent started the process; the cache held {files} files at the end)")
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": rows, "argv": sys.argv[1:]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
