"""Training-step and evaluation throughput of vpkit's own loop (train.train_one_epoch, evaluate.predict).

The 7B preset builds the released mPLUG-Owl2-7B shapes with random weights directly on the device
(vpkit.models: built on `meta`, materialised in the target dtype), so no checkpoint is needed. Batches are
uint8 images on the CPU, as the data loader yields them, so the host-to-device copy and the uint8 -> [0, 1]
conversion are timed too. Training = prompt -> normalise -> frozen model -> score -> MSE -> backward to the
prompt -> SGD step (with a GradScaler under fp16 autocast); evaluation = the same forward without gradients.

    python benchmarks/bench_train.py                              # 7B bf16 CUDA, batch 8 16 32, compile both
    python benchmarks/bench_train.py --dtype fp16 --amp fp16      # the paper's precision
    python benchmarks/bench_train.py --checkpointing              # activation checkpointing (memory-lean)
    python benchmarks/bench_train.py --checkpointing full selective --batches 16 32   # modes side by side
    python benchmarks/bench_train.py --preset tiny --device cpu    # the CPU smoke mode
    python benchmarks/bench_train.py --settings default --compile off   # exactly what `vpkit train` runs
    python benchmarks/bench_train.py --settings default --compile off --fused both   # fused SGD vs torch's default
    python benchmarks/bench_train.py --settings default --compile reduce-overhead    # CUDA graphs
    python benchmarks/bench_train.py --end-to-end                 # one real epoch of vpkit.train + projection

`--settings default` takes precision, determinism and compile from vpkit's config defaults (what `vpkit train`
runs with no flags: the paper's fp16), at the paper's batch sizes 4 (KonIQ-10k, AGIQA-3K) and 32 (KADID-10k).
`--end-to-end` generates a KADID-format set of 512x384 PNGs (--e2e-images, default 2,000), trains one real epoch
with `vpkit.train.train` on it (data loader workers, validation, test, checkpoint writes) and prints the epoch's
wall time, its training images/s beside the step throughput on in-memory batches (the share lost to waiting for
data), and the projected wall time of one KADID-10k experiment and of all 33 experiments.

Targets (issue 14; H200, 7B, the paper's fp16, batch 32): training >= 140 images/s (must: 120) in <= 36 GiB; evaluation
>= 320 images/s (must: 290); batch 4 >= 60% of batch 32's training rate; a checkpointing (lean) row <= 20 GiB at
>= 90 images/s. `target_lines` prints each against its goal.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpkit.evaluate import PromptedScorer, predict
from vpkit.models import MPLUGOwl2Config, MPLUGOwl2ForCausalLM, build_tiny_tokenizer, tiny_config
from vpkit.models.query import MPLUGOwl2Scorer
from vpkit.prompters import build_prompter
from vpkit.train import build_optimizer, deterministic_kernels, train_one_epoch, uses_fused_sgd

# --compile: eager, torch.compile's default mode, both of those, or one torch.compile mode by name (train.compile).
COMPILE_SETTINGS = {"off": [False], "on": [True], "both": [False, True], "reduce-overhead": ["reduce-overhead"],
                    "max-autotune-no-cudagraphs": ["max-autotune-no-cudagraphs"]}
# --fused: the SGD `vpkit train` builds (fused on CUDA, vpkit.train.uses_fused_sgd), fused, torch's default, or
# both (fused first: on CUDA what `vpkit train` runs).
FUSED_SETTINGS = {"auto": [None], "on": [True], "off": [False], "both": [True, False]}

# Issue 14's goals for the paper's settings on one H200 (7B, fp16, no flags): (goal, must) each.
TARGETS = {"batch": 32, "train_images_per_s": (140.0, 120.0), "train_peak_gib": 36.0,
           "eval_images_per_s": (320.0, 290.0), "batch4_share_percent": 60.0, "lean_peak_gib": 20.0,
           "lean_images_per_s": 90.0}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=("7b", "tiny"), default="7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--dtype", choices=("bf16", "fp16", "fp32"), help="model weights (default bf16 on CUDA, fp32 on CPU)"
    )
    parser.add_argument(
        "--amp",
        choices=("none", "fp16", "bf16"),
        help="autocast (default: the weights' half precision on CUDA, none on CPU)",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, help="timed steps per measurement (default 6 on CUDA, 2 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 2; 3 with compile)")
    parser.add_argument(
        "--compile",
        choices=tuple(COMPILE_SETTINGS),
        help="torch.compile the scorer: off, on (default mode), both, or a mode by name (default: both on CUDA, "
        "off on CPU)",
    )
    parser.add_argument(
        "--fused",
        choices=tuple(FUSED_SETTINGS),
        default="auto",
        help="SGD: auto = as `vpkit train` builds it (fused on CUDA), on = fused, off = torch's default SGD, both",
    )
    parser.add_argument(
        "--checkpointing",
        nargs="*",
        choices=("off", "full", "selective", "mixed"),
        help="activation checkpointing modes to measure, one after the other on the same model (the flag alone: "
        "full; absent: off)",
    )
    parser.add_argument("--compile-cache-dir", help="torch.compile's cache folder (train.compile_cache_dir)")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="measure under torch's deterministic kernels (train's default)",
    )
    parser.add_argument("--prompt", default="padding", help="prompt type (padding, fixed_patch, full)")
    parser.add_argument("--size", type=int, default=30, help="prompt size in px at 448 (scaled to the model)")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument(
        "--settings",
        choices=("default", "custom"),
        default="custom",
        help="default: dtype, amp, determinism and batches 4 16 32 as `vpkit train` runs the paper's experiments",
    )
    parser.add_argument("--end-to-end", action="store_true", help="train one real epoch with vpkit.train")
    parser.add_argument("--e2e-images", type=int, default=2000, help="generated 512x384 images (end-to-end)")
    parser.add_argument("--e2e-size", type=int, nargs=2, default=(512, 384), metavar=("W", "H"))
    parser.add_argument("--e2e-batch", type=int, default=32, help="training batch of the end-to-end epoch")
    args = parser.parse_args(argv)
    cuda = args.device.startswith("cuda")
    if args.settings == "default":
        apply_train_defaults(args, argv)
    args.dtype = args.dtype or ("bf16" if cuda else "fp32")
    args.amp = args.amp or (args.dtype if cuda and args.dtype != "fp32" else "none")
    args.steps = args.steps or (6 if cuda else 2)
    args.compile = args.compile or ("both" if cuda else "off")
    args.checkpointing = ["off"] if args.checkpointing is None else args.checkpointing or ["full"]
    return args


def apply_train_defaults(args: argparse.Namespace, argv) -> None:
    """What `vpkit train` uses when given no flags (vpkit.config's defaults), unless named on the command line."""
    from vpkit.config import ModelConfig, TrainConfig

    given = " ".join(argv if argv is not None else sys.argv[1:])
    train, model = TrainConfig(), ModelConfig()
    cuda = args.device.startswith("cuda")
    if "--dtype" not in given:
        args.dtype = model.dtype if cuda else "fp32"
    if "--amp" not in given:
        args.amp = train.amp if cuda else "none"
    if "--deterministic" not in given:
        args.deterministic = train.deterministic
    if "--compile" not in given:
        args.compile = compile_label(train.compile)
    if "--batches" not in given:
        args.batches = [4, 16, 32]


def build_scorer(preset: str, dtype: str, device: str, checkpointing: bool | str) -> MPLUGOwl2Scorer:
    """A random-weight scorer; the small word-level tokenizer stands in for LLaMA's (similar length)."""
    tokenizer = build_tiny_tokenizer()
    config = MPLUGOwl2Config(source="7B defaults") if preset == "7b" else tiny_config(len(tokenizer))
    model = MPLUGOwl2ForCausalLM.random_init(config, dtype=dtype, device=device, seed=0)
    return MPLUGOwl2Scorer(model, tokenizer, checkpointing=checkpointing)


def synthetic_batches(count: int, batch: int, image_size: int, pin: bool) -> list[dict]:
    """Loader-like batches: uint8 images on the CPU (pinned for CUDA, as make_loader does), labels, names."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for i in range(count):
        images = torch.randint(
            0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8, generator=generator
        )
        batches.append(
            {
                "image": images.pin_memory() if pin else images,
                "label": torch.rand(batch, generator=generator),
                "name": [f"img{i}_{j}" for j in range(batch)],
            }
        )
    return batches


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def timed(device: str, work) -> float:
    synchronise(device)
    start = time.perf_counter()
    work()
    synchronise(device)
    return time.perf_counter() - start


def measure(scorer, args, batch: int, use_compile: bool | str, fused: bool | None = None) -> list[dict]:
    """Train-step and evaluation throughput for one batch size, with or without torch.compile (True: its default
    mode, or a mode's name), with the SGD `vpkit train` builds (`fused` None) or fused / not as told."""
    from vpkit.config import PAPER_IMAGE_SIZE, TrainConfig, scaled_prompt_size

    size = scaled_prompt_size(args.size, PAPER_IMAGE_SIZE, scorer.image_size)
    prompter = build_prompter(args.prompt, size=size, image_size=scorer.image_size).to(args.device)
    model = PromptedScorer(scorer, prompter, compile_model=use_compile, compile_cache_dir=args.compile_cache_dir)
    optimizer = build_optimizer(prompter.parameters(), lr=60.0, fused=fused)  # the paper's optimiser
    scaler = torch.amp.GradScaler(torch.device(args.device).type, enabled=args.amp == "fp16")
    warmup = args.warmup if args.warmup is not None else (3 if use_compile else 2)
    pin = args.device.startswith("cuda")
    warm = synthetic_batches(warmup, batch, scorer.image_size, pin)
    batches = synthetic_batches(args.steps, batch, scorer.image_size, pin)
    common = {
        "preset": args.preset,
        "device": args.device,
        "dtype": args.dtype,
        "amp": args.amp,
        "compile": use_compile,
        "fused": bool(optimizer.param_groups[0]["fused"]),
        "checkpointing": scorer.model.gradient_checkpointing,
        "deterministic": args.deterministic,
        "batch": batch,
    }
    rows = []

    clip = {"max_grad_norm": TrainConfig().max_grad_norm}  # gradient clipping as `vpkit train` does it
    reset_peak(args.device)
    # The first step alone: with compile, its time is the compile warm-up (cold or from the compile cache).
    first_step_s = timed(args.device, lambda: train_one_epoch(
        model, prompter, optimizer, scaler, warm[:1], args.device, args.amp, progress=False, **clip))
    if warm[1:]:
        train_one_epoch(model, prompter, optimizer, scaler, warm[1:], args.device, args.amp, progress=False, **clip)
    seconds = timed(
        args.device,
        lambda: train_one_epoch(
            model, prompter, optimizer, scaler, batches, args.device, args.amp, progress=False, **clip
        ),
    )
    rows.append(
        {
            **common,
            "mode": "train",
            "images_per_s": batch * args.steps / seconds,
            "step_ms": 1000 * seconds / args.steps,
            "peak_gib": peak_gib(args.device),
            "first_step_s": first_step_s,
        }
    )

    reset_peak(args.device)
    predict(model, warm, args.device, args.amp, progress=False)
    seconds = timed(args.device, lambda: predict(model, batches, args.device, args.amp, progress=False))
    rows.append(
        {
            **common,
            "mode": "eval",
            "images_per_s": batch * args.steps / seconds,
            "step_ms": 1000 * seconds / args.steps,
            "peak_gib": peak_gib(args.device),
        }
    )
    return rows


def compile_label(setting: bool | str) -> str:
    """The --compile spelling of a train.compile value: off, on, or the mode's name."""
    return {False: "off", True: "on"}.get(setting, setting)


def target_lines(rows: list[dict]) -> list[str]:
    """How the 7B preset's rows compare with the targets (TARGETS): batch-32 training and evaluation rates and
    peak memory, batch 4's share of the batch-32 training rate with the same settings, and any checkpointing
    row's rate and memory against the lean mode's."""
    def verdict(value: float, goal: float, must: float | None = None, most: bool = False) -> str:
        ok = (lambda limit: value <= limit) if most else (lambda limit: value >= limit)
        sign = "<=" if most else ">="
        if must is None:
            return f"goal {sign} {goal:g}: {'met' if ok(goal) else 'MISSED'}"
        return f"goal {sign} {goal:g}: {'met' if ok(goal) else 'missed'}, must {sign} {must:g}: " \
               f"{'met' if ok(must) else 'MISSED'}"

    def settings(row: dict) -> tuple:
        return row["mode"], row["compile"], row["fused"], row["checkpointing"], row.get("amp"), row.get("dtype")

    lines = []
    at_32 = {settings(row): row for row in rows if row["preset"] == "7b" and row["batch"] == TARGETS["batch"]}
    for row in at_32.values():
        label = (f"batch 32 {row['mode']} (compile {compile_label(row['compile'])}, fused SGD {row['fused']}, "
                 f"checkpointing {row['checkpointing']})")
        rate = row["images_per_s"]
        if row["mode"] == "eval":
            lines.append(f"{label}: {rate:.1f} img/s ({verdict(rate, *TARGETS['eval_images_per_s'])})")
            continue
        peak = row["peak_gib"]
        memory = "peak n/a" if peak is None else f"{peak:.1f} GiB ({verdict(peak, TARGETS['train_peak_gib'], most=True)})"
        if row["checkpointing"] not in (False, "off"):
            lean_memory = "n/a" if peak is None else verdict(peak, TARGETS["lean_peak_gib"], most=True)
            lines.append(f"{label}, lean mode: {rate:.1f} img/s ({verdict(rate, TARGETS['lean_images_per_s'])}), "
                         f"peak {lean_memory}")
        else:
            lines.append(f"{label}: {rate:.1f} img/s ({verdict(rate, *TARGETS['train_images_per_s'])}), {memory}")
    for row in rows:
        partner = at_32.get(settings(row))
        if row["preset"] == "7b" and row["batch"] == 4 and row["mode"] == "train" and partner:
            share = 100 * row["images_per_s"] / partner["images_per_s"]
            lines.append(f"batch 4 train (compile {compile_label(row['compile'])}, fused SGD {row['fused']}): "
                         f"{row['images_per_s']:.1f} img/s = {share:.0f}% of batch 32's "
                         f"(% {verdict(share, TARGETS['batch4_share_percent'])})")
    return lines


# ----------------------------------------------------------------------------- one real epoch


def end_to_end(scorer, args) -> dict:
    """One epoch of vpkit.train.train on a generated KADID-format set; returns its measured figures."""
    import tempfile

    from vpkit.config import paper_config
    from vpkit.data.synth import DEMO_DISTORTIONS, generate
    from vpkit.runs import read_metrics
    from vpkit.train import train

    per_reference = len(DEMO_DISTORTIONS) * 5
    n_refs = max(10, -(-args.e2e_images // per_reference))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        generate(tmp, n_refs=n_refs, distortions=DEMO_DISTORTIONS, size=tuple(args.e2e_size),
                 include_photos=False, progress=False)
        print(f"generated {n_refs * per_reference} images of {args.e2e_size[0]}x{args.e2e_size[1]} "
              f"in {time.perf_counter() - started:.1f} s", flush=True)
        config = paper_config(4).with_overrides(
            {
                "dataset": {"root": tmp},
                "model": {"dtype": args.dtype},
                "train": {
                    "epochs": 1,
                    "batch_size": args.e2e_batch,
                    "amp": args.amp,
                    "deterministic": args.deterministic,
                    "compile": e2e_compile(args),
                    "device": args.device,
                },
            },
            source="bench_train --end-to-end",
        )
        run_dir = Path(tmp) / "run"
        started = time.perf_counter()
        test = train(config, run_dir, scorer=scorer, progress=False)
        wall = time.perf_counter() - started
        row = read_metrics(run_dir)[-1]
    return {"epoch_wall_s": wall, "metrics": row, "test_n_images": test.get("n_images")}


def e2e_compile(args) -> bool | str:
    """train.compile of the end-to-end epoch: --compile's one setting (eager when it names two)."""
    settings = COMPILE_SETTINGS[args.compile]
    return settings[0] if len(settings) == 1 else False


def projection_lines(train_rate: dict[int, float], eval_rate: float) -> list[str]:
    """Wall time of the paper's experiments at measured rates (no early stop), with the arithmetic shown."""
    from vpkit.config import PAPER_DATASET_SETTINGS, PAPER_EXPERIMENTS
    from vpkit.data.specs import SPECS

    lines, total, missing = [], 0.0, set()
    for dataset, settings in PAPER_DATASET_SETTINGS.items():
        batch, epochs = settings["batch_size"], settings["epochs"]
        rate = train_rate.get(batch)
        if rate is None:
            lines.append(f"{dataset}: no training rate measured at batch {batch}")
            missing.add(batch)
            continue
        n_train, n_val, n_test = SPECS[dataset].paper_split
        seconds = epochs * (n_train / rate + n_val / eval_rate) + n_test / eval_rate
        count = sum(exp.dataset == dataset for exp in PAPER_EXPERIMENTS)
        total += count * seconds
        lines.append(
            f"{dataset}: {epochs} x ({n_train} / {rate:.1f} + {n_val} / {eval_rate:.1f}) + {n_test} / "
            f"{eval_rate:.1f} = {seconds / 60:.1f} min per experiment, x {count} = {count * seconds / 3600:.2f} h"
        )
    if missing:  # a sum over some datasets is not the time of all experiments
        batches = " ".join(str(b) for b in sorted(missing | set(train_rate)))
        lines.append(f"all {len(PAPER_EXPERIMENTS)} experiments: not projected (no training rate at batch "
                     f"{', '.join(str(b) for b in sorted(missing))}; measure with --batches {batches})")
    else:
        lines.append(f"all {len(PAPER_EXPERIMENTS)} experiments: {total / 3600:.2f} h (no early stop)")
    return lines


def main(argv=None) -> int:
    import pandas as pd

    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available here; use --preset tiny --device cpu")
    print(
        f"torch {torch.__version__}, device {args.device}"
        + (
            f" ({torch.cuda.get_device_name()})"
            if args.device.startswith("cuda")
            else f" ({torch.get_num_threads()} threads)"
        )
    )
    started = time.perf_counter()
    scorer = build_scorer(args.preset, args.dtype, args.device, "off")
    print(
        f"built the {args.preset} scorer ({sum(p.numel() for p in scorer.parameters()) / 1e6:,.1f} M params, "
        f"{scorer.image_size} px) in {time.perf_counter() - started:.1f} s"
    )
    rows = []
    for use_compile, fused, mode, batch in itertools.product(
        COMPILE_SETTINGS[args.compile], FUSED_SETTINGS[args.fused], args.checkpointing, args.batches
    ):
        scorer.model.set_gradient_checkpointing(mode)
        try:
            with deterministic_kernels(args.device, args.deterministic):
                measured = measure(scorer, args, batch, use_compile, fused)
        except torch.cuda.OutOfMemoryError:
            print(f"batch {batch} (compile {compile_label(use_compile)}, fused {fused}, checkpointing {mode}): "
                  "out of GPU memory", flush=True)
            torch.cuda.empty_cache()
            continue
        finally:
            torch.compiler.reset()  # a fresh compile per setting, and no cache growth between batch sizes
        rows.extend(measured)
        print(
            pd.DataFrame(measured).to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"),
            flush=True,
        )
    table = pd.DataFrame(rows)
    print("\n" + table.to_string(index=False, float_format=lambda v: f"{v:.2f}", na_rep="-"))
    for line in target_lines(rows):
        print(line)
    result = {"steps": rows}
    if args.end_to_end:
        result["end_to_end"] = report_end_to_end(scorer, args, rows)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    return 0


def report_end_to_end(scorer, args, rows: list[dict]) -> dict:
    """Run the real epoch and print it beside the in-memory step rate of the same settings."""
    measured = end_to_end(scorer, args)
    row = measured["metrics"]
    e2e_rate = row["train_images_per_s"]
    trains_fused = uses_fused_sgd(args.device)  # as vpkit.train builds the epoch's optimizer
    plain = [r for r in rows if r["compile"] == e2e_compile(args) and r["fused"] == trains_fused]
    step = {r["batch"]: r["images_per_s"] for r in plain if r["mode"] == "train"}
    evals = {r["batch"]: r["images_per_s"] for r in plain if r["mode"] == "eval"}
    print(f"\nend-to-end epoch (vpkit.train, batch {args.e2e_batch}): wall {measured['epoch_wall_s']:.1f} s "
          f"(train {row['train_seconds']:.1f} s, then validation, test and checkpoint writes), "
          f"training {e2e_rate:.1f} images/s")
    if "train_data_wait_s" in row:
        share = row["train_data_wait_s"] / max(row["train_seconds"], 1e-9)
        print(f"time the training loop waited for the data loader: {row['train_data_wait_s']:.1f} s "
              f"({100 * share:.1f}% of the training time)")
    if args.e2e_batch in step:
        ratio = e2e_rate / step[args.e2e_batch]
        print(f"end-to-end / in-memory step rate at batch {args.e2e_batch}: {e2e_rate:.1f} / "
              f"{step[args.e2e_batch]:.1f} = {100 * ratio:.1f}% (target >= 95%)")
    eval_rate = evals.get(32) or (max(evals.values()) if evals else None)
    if eval_rate and step:
        for line in projection_lines(step, eval_rate):
            print(line)
    return measured


if __name__ == "__main__":
    sys.exit(main())
