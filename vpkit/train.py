"""The training loop: fit a pixel prompt on a frozen model, one file, read top to bottom.

    for each epoch:
        for each batch:  score = model(prompt(images)); loss = MSE(score, label); SGD step on the prompt
        score the validation split; keep the prompt if (SRCC + PLCC) / 2 improved; stop after
        `patience` epochs without improvement
    score the test split with the best prompt

Everything lands in a run folder (vpkit.runs); a killed run resumes from its last finished epoch and
ends exactly where an uninterrupted run would (data order, augmentation and RNG states are restored).
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from vpkit import distributed, provenance
from vpkit.atomic import json_safe, write_csv_atomic, write_json_atomic
from vpkit.config import ExperimentConfig, resolve_for_model
from vpkit.device import autocast, resolve_device, to_model_input
from vpkit.evaluate import PromptedScorer, correlation_metrics, limit_table, predict
from vpkit.preflight import check_images, check_run_data
from vpkit.progress import tqdm
from vpkit.runs import (
    BEST_CHECKPOINT,
    PREDICTIONS_FILE,
    TEST_FILE,
    RunFolderError,
    RunState,
    check_checkpoint_matches,
    check_same_data,
    clear_run_dir,
    compare_with_run,
    copy_checkpoint,
    data_images,
    data_record,
    edited_config_hash,
    epoch_checkpoint_name,
    load_checkpoint_tensors,
    load_prompt_checkpoint,
    lock_run_dir,
    other_settings_message,
    prepare_run_dir,
    prompt_checkpoint_metadata,
    read_metrics,
    read_state,
    read_test,
    run_dir_action,
    run_status,
    save_prompt_checkpoint,
    torch_save_atomic,
    write_config,
    write_data_record,
    write_metrics,
    write_state,
)

EpochCallback = Callable[[dict], None]


def train(
    config: ExperimentConfig,
    run_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    *,
    scorer=None,
    callbacks: Iterable[EpochCallback] = (),
    progress: bool = True,
) -> dict:
    """Train the prompt of `config` into `run_dir`; returns the test metrics of the best epoch.

    `scorer` reuses an already loaded QualityScorer (else `load_scorer` from config.model).
    Each callback gets the epoch's metrics row (a dict) after the epoch is saved; an exception
    raised there stops the run, which `resume=True` continues later.
    The run folder belongs to this call while it runs (vpkit.runs.lock_run_dir). The data, the pre-flight
    checks, the model and the image cache come before anything in it changes, so a failed start leaves it as it
    was; a new run stopped before its first epoch is saved takes its files away again (no half-made run stays).

    Started by torchrun with several processes, each joins the process group here and trains its share of
    every batch (vpkit.distributed); only rank 0 owns and writes `run_dir`.
    """
    if distributed.launched_by_torchrun():
        with distributed.process_group(resolve_device(config.train.device)):
            return train(
                config, run_dir, resume, overwrite, scorer=scorer, callbacks=callbacks, progress=progress
            )
    distributed.check_global_batch(config.train.batch_size)  # before anything is written
    run_dir = Path(run_dir)
    owning = lock_run_dir(run_dir) if distributed.is_writer() else contextlib.nullcontext()
    with owning:  # rank 0 owns the folder for the whole run; the other ranks only read what it writes
        action = distributed.run_on_writer(run_dir_action, run_dir, resume=resume, overwrite=overwrite)
        device = distributed.local_device(resolve_device(config.train.device))
        progress = progress and distributed.is_writer()  # one set of progress bars, rank 0's
        if action != "new":
            _check_same_config(run_dir, config, device)
        table = _load_table(config)
        if action != "new":  # names, splits and labels first: no image file is read for that refusal
            distributed.run_on_writer(_check_same_data, run_dir, config, table)
        if action == "finished":  # its files decoded when it trained: only their contents are compared now
            digests = distributed.run_on_writer(check_images, table.frame["path"].tolist(), progress, decode=False)
        else:
            digests = distributed.run_on_writer(check_run_data, table, progress)  # its error is raised on every rank
        if action != "new":
            distributed.run_on_writer(_check_same_data, run_dir, config, table, digests)
        if action == "finished":
            distributed.run_on_writer(prepare_run_dir, run_dir, resume=resume, overwrite=overwrite)  # temp files
            return _report_finished(run_dir)

        if torch.device(device).type == "cpu":
            # Backward passes through the frozen model produce denormal floats that slow CPU kernels by 10-50x.
            torch.set_flush_denormal(True)
        config, notes = resolve_for_model(config, config.prompt.image_size, device)  # precision first
        if scorer is None:
            scorer = load_run_scorer(config, device)
        elif torch.device(scorer.device).type != torch.device(device).type:
            raise ValueError(
                f"the scorer given is on {scorer.device} but train.device resolves to {device}; "
                "move one of them (config train.device or load_scorer(device=...))"
            )
        config, more_notes = resolve_for_model(config, scorer.image_size, device)  # then the prompt size
        for note in notes + more_notes:
            say_once(f"note: {note}")

        with distributed.writer_first():  # rank 0 builds the prepared-image cache, the others then read it
            loaders = (_loader(config, table, "train", scorer.image_size, train=True, progress=progress),
                       _loader(config, table, "val", scorer.image_size, train=False, progress=progress))

        distributed.run_on_writer(prepare_run_dir, run_dir, resume=resume, overwrite=overwrite)  # only now
        try:
            with _recording(run_dir, action, config, device, scorer), \
                    deterministic_kernels(device, config.train.deterministic):
                return _fit(config, run_dir, action, scorer, device, table, digests, loaders, list(callbacks),
                            progress)
        except BaseException:
            if action == "new" and distributed.is_writer() and run_status(run_dir) == "started":
                clear_run_dir(run_dir)  # stopped before its first epoch was saved: no half-made run is left
            raise


def _recording(run_dir: Path, action: str, config: ExperimentConfig, device: str, scorer):
    """provenance.json of the run (rank 0 writes it): this process's session, added to those of a resumed run."""
    if not distributed.is_writer():
        return contextlib.nullcontext()
    entry = provenance.session(
        device, provenance.scorer_source(scorer, config.model.name_or_path),
        provenance.data_source(config.dataset.root, config.dataset.name), processes=distributed.world().size,
    )
    return provenance.recording(run_dir, "training", entry, append=action == "resume")


def _fit(config, run_dir, action, scorer, device, table, digests, loaders, callbacks, progress) -> dict:
    cfg = config.train
    _seed_everything(cfg.seed)
    prompter, optimizer, scaler, model = training_parts(config, scorer, device)

    if action == "resume":
        state, rows = restore_epoch(run_dir, config, prompter, optimizer, scaler)
        print(f"resuming {run_dir} after epoch {state.epoch} (best so far: epoch {state.best_epoch})")
    else:
        state, rows = RunState(config_hash=config.hash()), []
        if distributed.is_writer():
            write_config(run_dir, config)
            write_state(run_dir, state)
            write_data_record(run_dir, data_record(table, config, digests), data_images(table.frame, digests))

    train_loader, val_loader = loaders
    remaining = [] if state.stopped_early else range(state.epoch + 1, cfg.epochs + 1)
    epochs = tqdm(remaining, desc=config.name, disable=not progress, initial=state.epoch, total=cfg.epochs)
    for epoch in epochs:
        train_loader.sampler.set_epoch(epoch)  # order and flips depend on (seed, epoch) only: resumable
        started = time.perf_counter()
        loss, n_images, epoch_stats = train_one_epoch(
            model, prompter, optimizer, scaler, train_loader, device, cfg.amp, cfg.grad_accum, progress,
            max_grad_norm=cfg.max_grad_norm,
        )
        train_seconds = time.perf_counter() - started
        val = _validation_metrics(predict(model, val_loader, device, cfg.amp, progress, "val"), epoch)

        improved = val["selection"] > state.best_selection
        if improved:
            state.best_epoch, state.best_selection, state.bad_epochs = epoch, val["selection"], 0
        else:
            state.bad_epochs += 1
        row = {
            "epoch": epoch,
            "train_loss": loss,
            **epoch_stats,
            **{f"val_{k}": v for k, v in val.items()},
            "best": improved,
            "lr": optimizer.param_groups[0]["lr"],
            "train_seconds": round(train_seconds, 3),
            "train_images_per_s": round(n_images / max(train_seconds, 1e-9), 3),
        }
        rows.append(row)
        state.epoch = epoch
        state.stopped_early = state.bad_epochs >= cfg.patience
        if distributed.is_writer():
            save_epoch(run_dir, config, state, rows, prompter, optimizer, scaler)
        distributed.barrier()  # the epoch is on disk before any rank goes on (or reads best.safetensors)
        epochs.set_postfix(loss=f"{loss:.4f}", val_srcc=f"{val['srcc']:.3f}", best=state.best_epoch)
        for callback in callbacks:
            callback(dict(row))
        if state.stopped_early:
            print(f"early stop after epoch {epoch}: no better validation score for {cfg.patience} epochs")
            break

    return _test_best(run_dir, config, table, model, prompter, state, device, progress)


def training_parts(config: ExperimentConfig, scorer, device: str):
    """What trains in a run of `config`: the prompt (drawn from `train.seed`), its SGD, the gradient scaler (on for
    fp16 autocast) and the prompted model, for training and scoring (compiled as `train.compile` says). A run
    builds them here, and so does `vpkit doctor`, so that it checks the same parts."""
    from vpkit.prompters import prompter_from_config

    cfg = config.train
    prompter = prompter_from_config(config.prompt, torch.Generator().manual_seed(cfg.seed),
                                    image_size=scorer.image_size).to(device)
    optimizer = build_optimizer(prompter.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    scaler = torch.amp.GradScaler(torch.device(device).type, enabled=cfg.amp == "fp16")
    model = PromptedScorer(scorer.eval(), prompter, compile_model=cfg.compile,
                           compile_cache_dir=cfg.compile_cache_dir)
    return prompter, optimizer, scaler, model


# ----------------------------------------------------------------------------- one epoch


def train_one_epoch(
    model,
    prompter,
    optimizer,
    scaler,
    loader,
    device: str,
    amp: str = "none",
    grad_accum: int = 1,
    progress: bool = True,
    max_grad_norm: float | None = None,
) -> tuple[float, int, dict]:
    """One pass over `loader` with SGD on the prompt; returns (mean MSE per image, images seen, the epoch's
    statistics: gradient norms of its optimiser steps, see `GradNormLog.summary`, and `train_data_wait_s`, the
    seconds the loop spent waiting for the loader's next batch).

    `model` maps [0,1] images to fp32 scores (a PromptedScorer, maybe compiled); `scaler` is a GradScaler
    (enabled for fp16 autocast); `max_grad_norm` clips each step's total gradient norm (None: no clipping).
    The loss is summed on the device and read only every few steps (`LossReads`), so a step never waits for
    the device; an fp32 run still stops with FloatingPointError at the first read after a non-finite loss.
    """
    prompter.train()
    n_images = 0
    grad_norms = GradNormLog(max_grad_norm)
    losses = LossReads(device, check_finite=not scaler.is_enabled())  # fp16: the scaler skips inf/NaN steps
    steps = len(loader)
    zero_gradients(optimizer)
    data = DataWait(loader)
    bar = tqdm(data, desc="train", leave=False, disable=not progress)
    for step, batch in enumerate(bar, start=1):
        images = to_model_input(batch["image"], device)
        labels = batch["label"].to(device, torch.float32)
        with autocast(device, amp):
            scores = model(images)
        loss = F.mse_loss(scores.float(), labels)  # the score is fp32 whatever the model's precision
        share = distributed.loss_for_global_batch(loss, loader, step, len(labels))  # `loss` with one rank
        scaler.scale(share / grad_accum).backward()
        if step % grad_accum == 0 or step == steps:
            distributed.average_gradients(prompter.parameters())  # the global batch's gradient on every rank
            grad_norms.add(clip_gradients(optimizer, scaler, max_grad_norm))  # so the norm is the global one
            scaler.step(optimizer)  # under fp16 the scaler skips steps with inf/NaN gradients
            scaler.update()
            zero_gradients(optimizer)
        losses.add(loss, len(labels))
        n_images += len(labels)
        if losses.due(step, last=step == steps):
            bar.set_postfix(loss=f"{losses.read(step) / n_images:.4f}")
    prompter.eval()
    total_loss, n_images = distributed.sum_over_ranks(losses.read(steps), n_images)
    stats = {**grad_norms.summary(), "train_data_wait_s": round(data.seconds, 3)}
    return total_loss / max(n_images, 1), int(n_images), stats


# Reading the loss makes the host wait for the device; it is read this often (steps or seconds, whichever comes
# first) for the progress bar and the non-finite check, and once at the end of the epoch.
LOSS_READ_STEPS = 25
LOSS_READ_SECONDS = 2.0


class LossReads:
    """The epoch's summed loss (loss x images per step), accumulated on the device and read now and then."""

    def __init__(self, device: str, check_finite: bool):
        # float64 like the Python float it replaces, so the epoch's mean loss is the same number as before
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.check_finite = check_finite
        self.read_step, self.read_time, self.value = 0, time.perf_counter(), 0.0

    def add(self, loss: torch.Tensor, n_images: int) -> None:
        self.total += loss.detach().double() * n_images

    def due(self, step: int, last: bool) -> bool:
        waited = time.perf_counter() - self.read_time
        return last or step - self.read_step >= LOSS_READ_STEPS or waited >= LOSS_READ_SECONDS

    def read(self, step: int) -> float:
        """The summed loss up to `step` (one host-device sync); raises on a non-finite loss when checking."""
        if step != self.read_step:
            self.value = float(self.total)
            if self.check_finite and not math.isfinite(self.value):
                raise FloatingPointError(
                    f"training loss is {self.value} at a step in {self.read_step + 1}..{step}; "
                    "lower train.lr or use fp32"
                )
            self.read_step, self.read_time = step, time.perf_counter()
        return self.value


class DataWait:
    """Iterates `loader` and adds up the seconds spent blocked in it (starting it and each next())."""

    def __init__(self, loader):
        self.loader, self.seconds = loader, 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        started = time.perf_counter()
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - started
            yield batch
            started = time.perf_counter()


def zero_gradients(optimizer) -> None:
    """Zero the optimizer's gradients in place, allocating them once: backward then adds each step's gradient into
    a buffer of its own. Under compile reduce-overhead the backward is a CUDA graph whose outputs are overwritten at
    the next step, so a gradient left as that output (set_to_none) could not be accumulated over micro-batches
    (torch raises); the prompt is small, so zeroing it costs one tiny kernel a step."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            else:
                parameter.grad.zero_()


def clip_gradients(optimizer, scaler, max_norm: float | None) -> torch.Tensor:
    """The total L2 norm of the optimiser's gradients before clipping (a device tensor: no host sync), after
    clipping them to `max_norm` (None: measured only).

    As the paper's Hugging Face Trainer does at every optimiser step (transformers 4.31, which mPLUG-Owl2
    pins: TrainingArguments.max_grad_norm defaults to 1.0 and the paper's trainer.py never sets it;
    Trainer._inner_training_loop calls scaler.unscale_(optimizer) and then clips model.parameters()).
    The gradients are unscaled first so that the norm is the true one; an inf/NaN norm leaves them
    non-finite, and scaler.step skips that step as before.
    """
    scaler.unscale_(optimizer)  # a no-op when the scaler is disabled; scaler.step will not unscale again
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in params])
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def build_optimizer(params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                    fused: bool | None = None) -> torch.optim.SGD:
    """The prompt's SGD; fused (`fused` None) where that pays, on CUDA (`uses_fused_sgd`).

    Fused is one kernel per step, and under fp16 it takes the GradScaler's inf/NaN flag as a device tensor and
    skips a non-finite step itself (GradScaler.step hands it over for optimizers with
    `_step_supports_amp_scaling`), where plain SGD makes GradScaler.step read the flag on the host, a
    host-device sync every step. False: torch's default implementation (foreach on CUDA).
    """
    params = list(params)
    if fused is None:
        fused = all(uses_fused_sgd(p.device) and p.is_floating_point() for p in params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, fused=fused or None)


def uses_fused_sgd(device: str | torch.device) -> bool:
    """Whether `build_optimizer` fuses SGD on `device`: on CUDA. torch 2.13 has a fused CPU kernel too, but on the
    CPU there is no sync to save, and with 2 threads on a busy 2-core machine it took ~31 ms a step for the
    tiny-model prompt against ~25 us unfused (its threads wait for each other; 1 thread: ~25 us both)."""
    return torch.device(device).type == "cuda"


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """`optimizer.load_state_dict(saved)`, keeping the implementation it was built with (fused or not).

    torch copies every param-group setting from the saved state, "fused" and "foreach" too: a run saved on a
    device without the fused kernel (the CPU) and resumed on CUDA would otherwise resume unfused, and a fused
    optimizer's GradScaler hand-over then fails in the unfused step.
    """
    implementation = [{key: group[key] for key in ("fused", "foreach")} for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, chosen in zip(optimizer.param_groups, implementation):
        group.update(chosen)


class GradNormLog:
    """Per-epoch statistics of the optimiser steps' gradient norms, accumulated on the device and read once."""

    def __init__(self, max_norm: float | None):
        self.max_norm = max_norm
        self.norms: list[torch.Tensor] = []

    def add(self, norm: torch.Tensor) -> None:
        self.norms.append(norm.detach().float().reshape(()))

    def summary(self) -> dict:
        """grad_norm_mean / grad_norm_max over the steps with a finite norm (inf/NaN steps were skipped),
        grad_clipped_fraction: the share of those steps that clipping shrank (None when clipping is off)."""
        nan = float("nan")
        if not self.norms:
            return {"grad_norm_mean": nan, "grad_norm_max": nan, "grad_clipped_fraction": None}
        norms = torch.stack(self.norms).cpu()  # the epoch's one read of the norms
        finite = norms[torch.isfinite(norms)]
        clipped = None
        if self.max_norm is not None:
            clipped = float((finite > self.max_norm).float().mean()) if len(finite) else nan
        return {
            "grad_norm_mean": float(finite.mean()) if len(finite) else nan,
            "grad_norm_max": float(finite.max()) if len(finite) else nan,
            "grad_clipped_fraction": clipped,
        }


def _validation_metrics(predictions: pd.DataFrame, epoch: int) -> dict:
    """Correlations on the validation split; an epoch whose scores are all equal can never be the best."""
    from vpkit.metrics import MetricInputError

    try:
        return correlation_metrics(predictions, logistic=False)
    except MetricInputError as error:
        print(f"warning: epoch {epoch} validation metrics undefined ({error}); the epoch cannot be the best")
        nan = float("nan")
        return {"srcc": nan, "plcc": nan, "krcc": nan, "selection": float("-inf")}


# ----------------------------------------------------------------------------- data and model


def load_run_scorer(config: ExperimentConfig, device: str):
    """The frozen scorer `config.model` names, on `device`, with `train.checkpointing`."""
    from vpkit.models import load_scorer

    model = config.model
    return load_scorer(
        model.name_or_path,
        dtype=model.dtype,
        device=device,
        normalisation=model.normalisation,
        score_type=model.score_type,
        checkpointing=config.train.checkpointing,
    )


_SAID: set[str] = set()  # notes already printed by this process


def say_once(line: str) -> None:
    """Print `line` the first time this process says it: a notebook that trains several runs with the same
    settings shows "fp16 -> fp32 on CPU" once, not before every run."""
    if line not in _SAID:
        _SAID.add(line)
        print(line)


def _load_table(config: ExperimentConfig):
    from vpkit.data import load_table

    data = config.dataset
    table = load_table(data.name, data.root, layout=data.layout, split=data.split, seed=config.train.seed)
    if config.train.limit is not None:
        table = limit_table(table, config.train.limit, config.train.seed)
    return table


def _check_same_data(run_dir: Path, config: ExperimentConfig, table, digests: list[str] | None = None) -> None:
    """Refuse to resume (or report as done) a run on other data than it was trained on; a moved copy is fine.
    Without `digests` only the image names, splits and labels are compared, and nothing is said."""
    note = check_same_data(run_dir, data_record(table, config, digests), data_images(table.frame, digests))
    if note and digests is not None:
        print(f"note: {note}")


def _loader(config: ExperimentConfig, table, split: str, image_size: int, train: bool, progress: bool = True):
    from vpkit.data import make_loader

    cfg = config.train  # every split is non-empty here: train() ran the pre-flight check (vpkit.preflight)
    if train:
        distributed.check_global_batch(cfg.batch_size, len(table.rows(split)))
    world = distributed.world()
    return make_loader(
        table,
        split,
        image_size,
        distributed.per_rank_batch(cfg.batch_size) if train else cfg.eval_batch_size,
        train=train,
        method=config.dataset.preprocess,
        cache_dir=cfg.cache_dir,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        progress=progress,
        rank=world.rank,
        world_size=world.size,
    )


# ----------------------------------------------------------------------------- determinism


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextlib.contextmanager
def deterministic_kernels(device: str, enabled: bool = True):
    """Deterministic kernels while training (a warning where torch has none); the global flags are restored.

    Disabled, torch's defaults stay as they are (faster on CUDA, not bitwise repeatable).
    """
    if not enabled:
        yield
        return
    if device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it for repeatable matmuls
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark = previous[2]


def _rng_state() -> dict:
    numpy_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- saving and resuming


def _trainer_state_name(epoch: int) -> str:
    return f"trainer-state-{epoch:02d}.pt"


def save_epoch(
    run_dir: Path, config, state: RunState, rows: list[dict], prompter, optimizer, scaler
) -> None:
    """Save one finished epoch; state.json goes last, so it only ever names fully saved epochs."""
    epoch = state.epoch
    metrics = {k: v for k, v in rows[-1].items() if k.startswith("val_") or k == "train_loss"}
    epoch_file = run_dir / epoch_checkpoint_name(epoch)
    save_prompt_checkpoint(
        epoch_file, prompter.state_dict(), prompt_checkpoint_metadata(config, prompter, epoch, metrics)
    )
    if state.best_epoch == epoch:
        copy_checkpoint(epoch_file, run_dir / BEST_CHECKPOINT)
    write_metrics(run_dir, rows)
    torch_save_atomic(
        run_dir / _trainer_state_name(epoch),
        {
            "epoch": epoch,
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": _rng_state(),
        },
    )
    write_state(run_dir, state)
    for old in run_dir.glob("trainer-state-*.pt"):
        if old.name != _trainer_state_name(epoch):
            old.unlink()


def restore_epoch(run_dir: Path, config, prompter, optimizer, scaler) -> tuple[RunState, list[dict]]:
    """Load the last finished epoch's prompt, optimizer, scaler and RNG states."""
    state = read_state(run_dir)
    if state.config_hash != config.hash():  # `config` is resolved: this names what differs
        _check_same_config(run_dir, config, config.train.device, config.prompt.image_size)
    trainer_file = run_dir / _trainer_state_name(state.epoch)
    if not trainer_file.is_file():
        raise RunFolderError(
            f"{trainer_file}: missing, so epoch {state.epoch} cannot be resumed exactly; "
            "pass --overwrite to start again"
        )
    epoch_file = run_dir / epoch_checkpoint_name(state.epoch)
    state_dict, metadata = load_prompt_checkpoint(epoch_file)
    check_checkpoint_matches(epoch_file, metadata, prompter.spec(), state.config_hash)
    load_checkpoint_tensors(prompter, epoch_file, state_dict, run_dir)
    saved = torch.load(trainer_file, map_location="cpu", weights_only=True)
    load_optimizer_state(optimizer, saved["optimizer"])
    scaler.load_state_dict(saved["scaler"])
    _set_rng_state(saved["rng"])
    if state.best_epoch and distributed.is_writer():  # best may be ahead of state.json (killed mid-save)
        copy_checkpoint(run_dir / epoch_checkpoint_name(state.best_epoch), run_dir / BEST_CHECKPOINT)
    rows = [row for row in read_metrics(run_dir) if row["epoch"] <= state.epoch]
    return state, rows


def _check_same_config(run_dir: Path, config: ExperimentConfig, device: str, image_size: int | None = None) -> None:
    """Refuse to resume (or report as done) a run folder that holds a run of other settings, or whose config.yaml
    was edited after it started and so no longer says what it ran with (`image_size`: see
    vpkit.runs.compare_with_run)."""
    comparison = compare_with_run(run_dir, config, device, image_size)
    if not comparison.same or edited_config_hash(run_dir, comparison.recorded) is not None:
        raise RunFolderError(other_settings_message(run_dir, comparison.recorded, comparison.expected))


# ----------------------------------------------------------------------------- the end


def _test_best(run_dir: Path, config, table, model, prompter, state: RunState, device, progress) -> dict:
    """Score the test split with the best epoch's prompt; write predictions.csv and test.json."""
    if state.best_epoch == 0:
        raise RunFolderError(
            f"{run_dir}: no epoch had defined validation metrics, so there is no best prompt "
            "to test; see the warnings above"
        )
    distributed.barrier()  # rank 0 has written (or, resuming, restored) best.safetensors
    state_dict, metadata = load_prompt_checkpoint(run_dir / BEST_CHECKPOINT)
    check_checkpoint_matches(run_dir / BEST_CHECKPOINT, metadata, prompter.spec(), state.config_hash)
    load_checkpoint_tensors(prompter, run_dir / BEST_CHECKPOINT, state_dict, run_dir)
    loader = _loader(config, table, "test", prompter.image_size, train=False, progress=progress)
    predictions = predict(model, loader, device, config.train.amp, progress, "test")
    mos = table.frame.set_index("name")["mos"]
    predictions.insert(1, "mos", mos.loc[predictions["name"]].to_numpy())
    test = _test_metrics(predictions)
    test.update(
        {
            "best_epoch": state.best_epoch,
            "epochs_run": state.epoch,
            "stopped_early": state.stopped_early,
            "n_images": len(predictions),
            "dataset": config.dataset.name,
            "split": "test",
            "config_hash": config.hash(),
        }
    )
    test = json_safe(test)  # NaN (a failed logistic fit) -> None, as in test.json
    state.finished = True
    if not distributed.is_writer():
        return test
    write_csv_atomic(run_dir / PREDICTIONS_FILE, predictions)
    write_json_atomic(run_dir / TEST_FILE, test)
    write_state(run_dir, state)
    print(f"{config.name}: {_test_summary(test)}, best epoch {state.best_epoch}")
    return test


def _test_metrics(predictions: pd.DataFrame) -> dict:
    """The test correlations; where they are undefined (e.g. every test score equal), None with the reason, so a
    finished run still records its result rather than failing after all its epochs."""
    from vpkit.metrics import MetricInputError

    try:
        return correlation_metrics(predictions)
    except MetricInputError as error:
        print(f"warning: test metrics undefined ({error})")
        keys = ("srcc", "plcc", "krcc", "plcc_logistic4", "plcc_logistic5", "selection")
        return {**dict.fromkeys(keys), "undefined_reason": str(error)}


def _test_summary(test: dict) -> str:
    if test.get("srcc") is None:
        return f"test metrics undefined ({test.get('undefined_reason', 'no value recorded')})"
    return f"test SRCC {test['srcc']:.4f}, PLCC {test['plcc']:.4f}"


def _report_finished(run_dir: Path) -> dict:
    test = read_test(run_dir)  # a damaged test.json is named
    if test is None:
        raise RunFolderError(
            f"{run_dir}: marked finished but {TEST_FILE} is missing; pass --overwrite to retrain"
        )
    print(f"{run_dir}: already finished ({_test_summary(test)}); pass --overwrite to train again")
    return test
