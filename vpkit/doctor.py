"""`vpkit doctor`: what a bug report needs about this machine, then every training and scoring path that a run
on the chosen device takes, checked on the tiny model before a long run depends on it.

    vpkit doctor                   # the environment, then each path: OK or FAIL with the figure that decided it
    vpkit doctor --device cuda     # the GPU's paths: fp16 + GradScaler + fused SGD, bf16, clipping, checkpointing,
                                   # torch.compile default and reduce-overhead (with the cache), resume
    vpkit doctor --quick --json    # without torch.compile; one JSON object (paste it into a bug report)

Each path builds what a run builds (vpkit.train.training_parts on `tiny-random`) and trains two steps with the
run's own step function (vpkit.train.train_one_epoch) on the same two fixed batches, then scores two fixed images
with the run's scoring function (vpkit.evaluate.predict). The prompt's update over the two steps is compared with
the same settings computed on the CPU in float32 (relative difference, within a tolerance per precision), and so
are the scores; the clipping path also checks that clipping bounded the update, and the resume path that
stopping after step 1 and resuming from the run-folder files (vpkit.train.save_epoch / restore_epoch) ends where
two uninterrupted steps do. Exit status 1 if any path fails.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

# How far a path may land from the same settings computed on the CPU in float32, by device type and the path's
# least precise arithmetic: the relative difference of the prompt's two-step update, and the largest difference
# of a score in [0, 1]. Measured on a CPU (tiny-random, lr 60): 0 for fp32 eager and checkpointing, 1.5e-6
# compiled, 0.012 (update) and 0.003 (scores) in fp16, 0.04-0.06 and 0.013 in bf16. A GPU's fp32 convolutions may use TF32 (10-bit
# mantissa), hence its looser fp32 bound; fp16 keeps 3 more mantissa bits than bf16.
UPDATE_TOLERANCE = {("cpu", "fp32"): 1e-4, ("cpu", "fp16"): 5e-2, ("cpu", "bf16"): 1.5e-1,
                    ("cuda", "fp32"): 1e-2, ("cuda", "fp16"): 5e-2, ("cuda", "bf16"): 1.5e-1}
SCORE_TOLERANCE = {("cpu", "fp32"): 1e-5, ("cpu", "fp16"): 1e-2, ("cpu", "bf16"): 3e-2,
                   ("cuda", "fp32"): 1e-3, ("cuda", "fp16"): 1e-2, ("cuda", "bf16"): 3e-2}
# Resuming replays the same arithmetic on the same device: only rounding-free repetition passes.
RESUME_TOLERANCE = 1e-6
# Far below the tiny model's gradient norm (about 0.03), so that every step of the clipping path clips.
CLIP_NORM = 1e-3
STEPS = 2
BATCH_SIZE = 2
DATA_SEED = 0


@dataclasses.dataclass(frozen=True)
class PathSpec:
    """One path a run can take: the settings that differ from the device's defaults."""

    name: str
    overrides: dict = dataclasses.field(default_factory=dict)  # {"model": {...}, "train": {...}}
    resume: bool = False

    def config(self, base):
        return base.with_overrides(self.overrides, source=f"vpkit doctor path {self.name!r}")


@dataclasses.dataclass
class PathResult:
    name: str
    ok: bool
    figure: str  # what decided it, in words and numbers
    precision: str | None = None
    update_difference: float | None = None
    update_tolerance: float | None = None
    score_difference: float | None = None
    score_tolerance: float | None = None
    peak_memory_mib: float | None = None
    memory_measure: str | None = None  # what peak_memory_mib counts
    seconds: float | None = None
    details: dict = dataclasses.field(default_factory=dict)

    def line(self) -> str:
        memory = "n/a" if self.peak_memory_mib is None else f"{self.peak_memory_mib:,.0f} MiB"
        timing = "" if self.seconds is None else f", {self.seconds:.1f} s"
        return (f"{'OK  ' if self.ok else 'FAIL'}  {self.name}: {self.figure}; "
                f"{self.memory_measure or 'peak memory'} {memory}{timing}")


def base_config(device: str):
    """The defaults a run takes on `device`, on the tiny model (the paper's experiment settings otherwise)."""
    from vpkit.config import ExperimentConfig, resolve_for_model
    from vpkit.models.tiny import TINY_IMAGE_SIZE, TINY_RANDOM

    config = ExperimentConfig(name="doctor").with_overrides({"model": {"name_or_path": TINY_RANDOM}})
    resolved, _ = resolve_for_model(config, TINY_IMAGE_SIZE, device)
    return resolved


def planned_paths(device: str, quick: bool) -> list[PathSpec]:
    """The paths a run on `device` takes with its defaults and options (`quick`: without torch.compile)."""
    from vpkit.config import CHECKPOINTING_MODES

    cuda = torch.device(device).type == "cuda"
    base = base_config(device)
    default = f"defaults ({_describe(base)})"
    paths = [PathSpec(default)]
    if cuda:
        paths.append(PathSpec("fp32 weights, no autocast", {"model": {"dtype": "fp32"}, "train": {"amp": "none"}}))
    paths.append(PathSpec("bf16 weights, bf16 autocast", {"model": {"dtype": "bf16"}, "train": {"amp": "bf16"}}))
    if not cuda:  # a CPU run never takes it (resolve_for_model); the CPU checks the GPU default's arithmetic
        paths.append(PathSpec("fp16 weights, fp16 autocast, GradScaler (a GPU run's default, on the CPU)",
                              {"model": {"dtype": "fp16"}, "train": {"amp": "fp16"}}))
    paths.append(PathSpec(f"gradient clipping at {CLIP_NORM:g} (every step clips)",
                          {"train": {"max_grad_norm": CLIP_NORM}}))
    paths += [PathSpec(f"checkpointing {mode}", {"train": {"checkpointing": mode}})
              for mode in CHECKPOINTING_MODES if mode != base.train.checkpointing]
    if not quick:
        # A CPU run never compiles (resolve_for_model); here the CPU checks the compiled arithmetic all the same.
        paths.append(PathSpec("torch.compile default mode", {"train": {"compile": True}}))
        if cuda:
            paths.append(PathSpec("torch.compile reduce-overhead (CUDA graphs)",
                                  {"train": {"compile": "reduce-overhead"}}))
    paths.append(PathSpec("resume after step 1 from the run-folder files", resume=True))
    return paths


def _describe(config) -> str:
    from vpkit.train import uses_fused_sgd

    train = config.train
    parts = [f"{config.model.dtype} weights",
             "no autocast" if train.amp == "none" else f"{train.amp} autocast",
             *(["GradScaler"] if train.amp == "fp16" else []),
             "fused SGD" if uses_fused_sgd(train.device) else "SGD",
             f"clipping at {train.max_grad_norm:g}" if train.max_grad_norm else "no clipping",
             f"checkpointing {train.checkpointing}"]
    if train.compile:
        parts.append(f"torch.compile {'default' if train.compile is True else train.compile}")
    return ", ".join(parts)


def precision_of(config) -> str:
    """The least precise arithmetic a path uses, which sets its tolerance."""
    if config.train.amp != "none":
        return config.train.amp
    return config.model.dtype


# ----------------------------------------------------------------------------- one path


def fixed_batches(image_size: int) -> tuple[list[dict], list[dict]]:
    """STEPS training batches and one scoring batch: random images and labels, the same for every path."""
    generator = torch.Generator().manual_seed(DATA_SEED)

    def batch(prefix: str) -> dict:
        images = torch.randint(0, 256, (BATCH_SIZE, 3, image_size, image_size), generator=generator, dtype=torch.uint8)
        return {"image": images, "label": torch.rand(BATCH_SIZE, generator=generator),
                "name": [f"{prefix}{i}" for i in range(BATCH_SIZE)]}

    return [batch(f"train{step}-") for step in range(STEPS)], [batch("score-")]


@dataclasses.dataclass
class Outcome:
    """What a path produced: the prompt's update over the steps, the scores after them, and the step statistics."""

    update: torch.Tensor
    scores: torch.Tensor
    stats: dict
    optimizer_fused: bool
    scaler_scale: float | None


def train_two_steps(config, device: str, resume_dir: Path | None = None) -> Outcome:
    """Two steps of a run of `config` on `device`, then scoring; with `resume_dir`, stopped after the first step,
    saved there as a run saves an epoch, and continued from those files by freshly built parts."""
    from vpkit.evaluate import predict
    from vpkit.runs import RunState
    from vpkit.train import (
        deterministic_kernels,
        load_run_scorer,
        restore_epoch,
        save_epoch,
        train_one_epoch,
        training_parts,
    )

    cfg = config.train
    scorer = load_run_scorer(config, device)
    train_batches, score_batches = fixed_batches(scorer.image_size)
    with deterministic_kernels(device, cfg.deterministic):
        prompter, optimizer, scaler, model = training_parts(config, scorer, device)
        start = _flat(prompter)

        def steps(batches):
            return train_one_epoch(model, prompter, optimizer, scaler, batches, device, cfg.amp, cfg.grad_accum,
                                   progress=False, max_grad_norm=cfg.max_grad_norm)

        if resume_dir is None:
            _, _, stats = steps(train_batches)
        else:
            loss, _, stats = steps(train_batches[:1])
            state = RunState(config_hash=config.hash(), epoch=1, best_epoch=1)
            save_epoch(resume_dir, config, state, [{"epoch": 1, "train_loss": loss}], prompter, optimizer, scaler)
            prompter, optimizer, scaler, model = training_parts(config, scorer, device)  # a new process's parts
            restore_epoch(resume_dir, config, prompter, optimizer, scaler)
            _, _, stats = steps(train_batches[1:])
        update = _flat(prompter) - start
        scores = predict(model, score_batches, device, cfg.amp, progress=False)["score"].to_numpy()
    return Outcome(update=update, scores=torch.tensor(scores, dtype=torch.float64), stats=stats,
                   optimizer_fused=bool(optimizer.param_groups[0].get("fused")),
                   scaler_scale=float(scaler.get_scale()) if scaler.is_enabled() else None)


def _flat(prompter) -> torch.Tensor:
    return torch.cat([p.detach().double().cpu().reshape(-1) for p in prompter.parameters()])


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.norm().item()
    difference = (actual - expected).norm().item()
    return difference / scale if scale > 0 else difference


def check_path(spec: PathSpec, device: str, base, references: dict) -> PathResult:
    """Run one path and judge it against the CPU float32 run of the same settings (computed once per settings)."""
    config = spec.config(base)
    precision = precision_of(config)
    result = PathResult(spec.name, ok=False, figure="", precision=precision)
    started = time.perf_counter()
    cache = _compile_cache(config)
    cached_before = _file_count(cache) if cache else None
    try:
        with PeakMemory(device) as memory:
            if spec.resume:
                with tempfile.TemporaryDirectory(prefix="vpkit-doctor-") as folder:
                    outcome = train_two_steps(config, device, resume_dir=Path(folder))
            else:
                outcome = train_two_steps(config, device)
        reference = _reference(config, spec, device, base, references)
    except Exception as error:  # noqa: BLE001 - the path is what failed: its line says how, the others still run
        result.figure = f"error: {type(error).__name__}: {error}".splitlines()[0]
        result.seconds = time.perf_counter() - started
        return result
    result.seconds = time.perf_counter() - started
    result.peak_memory_mib, result.memory_measure = memory.peak_mib, memory.measure
    result.details = {"optimizer_fused": outcome.optimizer_fused, "grad_scaler_scale": outcome.scaler_scale,
                      **{k: v for k, v in outcome.stats.items() if k != "train_data_wait_s"}}
    result.update_difference = relative_difference(outcome.update, reference.update)
    result.score_difference = float((outcome.scores - reference.scores).abs().max())
    if spec.resume:
        against = f"two uninterrupted steps on {device}"
        result.update_tolerance = result.score_tolerance = RESUME_TOLERANCE
    else:
        against, where = "CPU fp32", (torch.device(device).type, precision)
        result.update_tolerance, result.score_tolerance = UPDATE_TOLERANCE[where], SCORE_TOLERANCE[where]
    figures = [(f"update differs from {against} by {result.update_difference:.1e} (tolerance "
                f"{result.update_tolerance:g}), scores by {result.score_difference:.1e} "
                f"(tolerance {result.score_tolerance:g})")]
    ok = (result.update_difference <= result.update_tolerance and result.score_difference <= result.score_tolerance)
    if config.train.max_grad_norm == CLIP_NORM:
        bound = STEPS * config.train.lr * CLIP_NORM  # plain SGD moves at most lr x the clipped norm a step
        norm = outcome.update.norm().item()
        figures.append(f"update norm {norm:.3g} <= lr x clip x steps = {bound:.3g}")
        ok = ok and norm <= bound * (1 + 1e-4)
    if cache:
        figures.append(f"compile cache {cache}: {cached_before} -> {_file_count(cache)} files")
    if outcome.optimizer_fused:
        figures.append("fused SGD")
    if outcome.scaler_scale is not None:
        figures.append(f"GradScaler scale {outcome.scaler_scale:g}")
    result.ok = ok and math.isfinite(result.update_difference)
    result.figure = ", ".join(figures)
    return result


def _compile_cache(config) -> Path | None:
    """The folder a compiling path keeps its graphs in (the one a run uses), None for an eager path."""
    from vpkit.compile_cache import default_compile_cache_dir

    if not config.train.compile:
        return None
    return Path(config.train.compile_cache_dir or default_compile_cache_dir()).expanduser()


def _file_count(folder: Path) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else 0


def _reference(config, spec: PathSpec, device: str, base, references: dict) -> Outcome:
    """What the path is compared with: for resume, the uninterrupted path on the same device; otherwise the same
    settings on the CPU in float32, eager, without checkpointing."""
    if spec.resume:
        return train_two_steps(config, device)
    cpu = config.with_overrides({"model": {"dtype": "fp32"},
                                 "train": {"amp": "none", "checkpointing": "off", "compile": False,
                                           "device": "cpu"}})
    key = cpu.hash()
    if key not in references:
        references[key] = train_two_steps(cpu, "cpu")
    return references[key]


class PeakMemory:
    """The most memory a path held: allocated by torch on a GPU; on a CPU the process's peak resident set (Linux:
    its high-water mark, reset at the start), else unknown."""

    def __init__(self, device: str):
        self.cuda = torch.device(device).type == "cuda"
        self.device = device
        self.peak_mib: float | None = None
        self.measure = "peak GPU memory allocated" if self.cuda else "peak resident memory of the process"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._can_reset = _reset_resident_peak()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize(self.device)
            self.peak_mib = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._can_reset:
            self.peak_mib = _resident_peak_mib()
        return False


def _reset_resident_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current resident size
        return _resident_peak_mib() is not None
    except OSError:
        return False


def _resident_peak_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# ----------------------------------------------------------------------------- all of it


def check_paths(device: str, quick: bool = False, progress: bool = True, on_result=None) -> list[PathResult]:
    """Every planned path checked in turn; `on_result` is called with each result as it is known (a compile path
    takes minutes with a cold cache, so a person sees each line when it is decided)."""
    from vpkit.progress import tqdm

    if torch.device(device).type == "cpu":
        torch.set_flush_denormal(True)  # as a CPU run does (vpkit.train.train)
    base = base_config(device)
    references: dict = {}
    results = []
    for spec in tqdm(planned_paths(device, quick), desc="vpkit doctor", leave=False, disable=not progress):
        results.append(check_path(spec, device, base, references))
        if on_result is not None:
            on_result(results[-1])
    return results


def environment_lines(facts: dict) -> list[str]:
    git = facts.get("git")
    source = "installed package" if git is None else (
        f"checkout {git['commit'][:12]}" + (" with uncommitted changes" if git["dirty"] else ""))
    lines = [
        f"vpkit {facts['vpkit']} ({source})",
        f"Python {facts['python']} on {facts['platform']}",
        f"torch {facts['torch']}, transformers {facts['transformers']}, huggingface_hub {facts['huggingface_hub']}",
        (f"CUDA {facts['cuda'] or 'none'} (available: {'yes' if facts['cuda_available'] else 'no'}), "
         f"cuDNN {facts['cudnn'] or 'none'}"),
    ]
    lines += [f"GPU {d['index']}: {d['name']}, {d['memory_gib']} GiB, compute capability {d['capability']}"
              for d in facts["devices"]] or ["GPUs: none"]
    for name, folder in facts["caches"].items():
        free = "free space unknown" if folder["free_gib"] is None else f"{folder['free_gib']} GiB free"
        state = ("" if folder["exists"] else ", not made yet") + ("" if folder["writable"] else ", NOT writable")
        lines.append(f"{name}: {folder['path']} ({free}{state})")
    for extra, packages in facts["extras"].items():
        if packages is None:
            lines.append(f"extra [{extra}]: unknown (vpkit is not installed; pip install -e .)")
            continue
        missing = [name for name, version in packages.items() if version is None]
        lines.append(f"extra [{extra}]: " + ("installed" if not missing else
                                            f"missing {', '.join(missing)} (pip install -e \".[{extra}]\")"))
    return lines


def run_doctor(args) -> int:
    """`vpkit doctor` (its options: vpkit.cli)."""
    from vpkit.atomic import json_safe
    from vpkit.device import resolve_device
    from vpkit.provenance import environment_facts

    device = resolve_device(args.device)
    facts = environment_facts(machine=True)
    if not args.json:
        for line in environment_lines(facts):
            print(line)
        print(f"paths on {device}, tiny model, {STEPS} steps of {BATCH_SIZE} images each, against CPU fp32:")
        sys.stdout.flush()
    # torch.compile and the loaders may print; with --json that goes to stderr, so stdout stays one JSON object
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        results = check_paths(device, quick=args.quick, progress=args.json,
                              on_result=None if args.json else lambda result: print(result.line(), flush=True))
    failed = [result for result in results if not result.ok]
    if args.json:
        report = {"environment": facts, "device": device, "quick": args.quick, "ok": not failed,
                  "paths": [dataclasses.asdict(result) for result in results]}
        print(json.dumps(json_safe(report), indent=1, allow_nan=False))  # a diverged path's NaN as null
    else:
        print(f"{len(results) - len(failed)} of {len(results)} paths OK" + (
            f"; FAILED: {', '.join(result.name for result in failed)} (include this output in a bug report)"
            if failed else ""))
    return 1 if failed else 0
