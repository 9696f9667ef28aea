"""Scoring images with a (prompted) frozen model: batch prediction, metrics, trained prompts from run folders.

Used by the training loop (validation and test), by `vpkit eval` (same- and cross-dataset, zero-shot)
and by `vpkit score` (a user's own image files).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vpkit.compile_cache import use_compile_cache
from vpkit.device import autocast, model_dtype_on, to_model_input
from vpkit.progress import tqdm


class PromptedScorer(torch.nn.Module):
    """scorer(prompter(images)) as one module ([0,1] images -> fp32 scores), compiled as a whole on request.

    `prompter` None scores the images as they are (zero-shot). With `compile_model`, the prompt -> score path is
    one torch.compile graph per batch size: the scorer's per-batch-size host work (token layout) runs eagerly
    first, since tracing it would split the graph at every data-dependent step. What is compiled is kept in
    `compile_cache_dir` (vpkit.compile_cache), where the next process with the same shapes finds it.

    `compile_model` True compiles in torch.compile's default mode; a string names the mode ("reduce-overhead":
    CUDA graphs, replayed each call). A CUDA graph writes each call's outputs over the previous call's, so a
    score must be copied if it is kept past the next call (`predict` does).
    """

    def __init__(self, scorer, prompter=None, compile_model: bool | str = False,
                 compile_cache_dir: str | None = None):
        super().__init__()
        self.scorer, self.prompter = scorer, prompter
        self.compiled = bool(compile_model)
        if compile_model:
            use_compile_cache(compile_cache_dir)  # torch.compile is lazy: this comes before its first compile
            mode = {} if compile_model is True else {"mode": compile_model}
            self._score = torch.compile(self._prompted_scores, **mode)
        else:
            self._score = self._prompted_scores

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.scorer.prepare_batch(images.shape[0])
        if self.compiled:
            # Each call is a new step for CUDA graph trees (reduce-overhead): the previous call's outputs and
            # its backward are done with, so their memory may be reused. Without a CUDA graph it does nothing.
            torch.compiler.cudagraph_mark_step_begin()
        return self._score(images)

    def _prompted_scores(self, images: torch.Tensor) -> torch.Tensor:
        return self.scorer(images, self.prompter)


@torch.no_grad()
def predict(
    model, loader, device: str, amp: str = "none", progress: bool = True, desc: str = "scoring",
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Score every batch of `loader` with `model` (e.g. a PromptedScorer); columns name, label, score. With
    `columns`, `model` gives that many values an image (e.g. scorer.word_logits), one column each, for score.

    Under data-parallel training the loader holds this rank's share of the images (make_loader's rank);
    the shares are gathered, so every rank returns every image once, in the one-process order.
    """
    from vpkit.distributed import gather_predictions

    names, labels, scores = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=not progress):
        images = to_model_input(batch["image"], device)
        with autocast(device, amp):
            batch_scores = model(images)
        # kept on the device (no sync per batch), copied: a CUDA-graph replay would overwrite the model's output
        shape = -1 if columns is None else (-1, len(columns))
        scores.append(batch_scores.detach().float().reshape(shape).clone())
        labels.append(np.asarray(batch["label"], dtype=np.float32))
        names.extend(batch["name"])
    empty = np.zeros(0 if columns is None else (0, len(columns)), np.float32)
    values = torch.cat(scores).cpu().numpy() if scores else empty  # float32, one (row of) value(s) an image
    shard = pd.DataFrame(
        {
            "name": names,
            "label": np.concatenate(labels) if labels else np.zeros(0, np.float32),
            **({"score": values} if columns is None else {name: values[:, i] for i, name in enumerate(columns)}),
        }
    )
    predictions = gather_predictions(shard)
    if predictions.empty:
        raise ValueError("nothing to score: the loader yielded no images (is the split empty?)")
    return predictions


def correlation_metrics(predictions: pd.DataFrame, target: str = "label", logistic: bool = True) -> dict:
    """SRCC, PLCC, KRCC, selection ((SRCC+PLCC)/2) and, with `logistic`, logistic-fit PLCCs; score vs `target`.

    Without `logistic` (per-epoch validation) nothing is fitted: faster, and no fit warnings on small splits.
    """
    from vpkit import metrics

    pred, mos = predictions["score"].to_numpy(), predictions[target].to_numpy()
    if logistic:
        return {key: float(value) for key, value in metrics.evaluate(pred, mos).items()}
    result = {
        "srcc": metrics.srcc(pred, mos),
        "plcc": metrics.plcc(pred, mos),
        "krcc": metrics.krcc(pred, mos),
    }
    result["selection"] = metrics.selection_metric(pred, mos)
    return {key: float(value) for key, value in result.items()}


# ------------------------------------------------------------------------- trained prompts


@dataclass
class TrainedPrompt:
    """A prompter loaded from a run folder or a checkpoint file, with what is known about it."""

    prompter: torch.nn.Module
    metadata: dict
    config: object | None  # ExperimentConfig of the run, when the source is a run folder
    source: Path


def checkpoint_path(source: str | Path) -> Path:
    """The prompt file of a run folder (best.safetensors) or the file itself."""
    from vpkit.runs import BEST_CHECKPOINT, RunFolderError

    source = Path(source)
    path = source / BEST_CHECKPOINT if source.is_dir() else source
    if not path.is_file():
        hint = " (has the run finished an epoch?)" if source.is_dir() else ""
        raise RunFolderError(f"{path}: prompt checkpoint not found{hint}")
    return path


def load_trained_prompt(source: str | Path, device: str = "cpu") -> TrainedPrompt:
    """Rebuild the prompter saved in a run folder or a vpkit .safetensors checkpoint."""
    from vpkit.prompters import prompter_from_config
    from vpkit.runs import (
        CONFIG_FILE,
        RunFolderError,
        check_checkpoint_matches,
        load_checkpoint_tensors,
        load_prompt_checkpoint,
        prompt_spec_of,
        read_config,
        read_state,
    )

    path = checkpoint_path(source)
    state, metadata = load_prompt_checkpoint(path)
    run_dir = path.parent
    config = read_config(run_dir) if (run_dir / CONFIG_FILE).is_file() else None
    if config is not None:  # a checkpoint inside a run folder must be that run's
        run_state = read_state(run_dir)  # its config hash was written with the checkpoints, by the same vpkit
        expected_hash = run_state.config_hash if run_state else None
        check_checkpoint_matches(path, metadata, prompt_spec_of(config), expected_hash)
    spec = metadata.get("prompt")
    missing = [key for key in ("type", "image_size") if key not in spec] if isinstance(spec, dict) else ["prompt"]
    if missing:
        raise RunFolderError(
            f"{path}: its metadata lacks {', '.join(repr(key) for key in missing)} (the prompt's type, size, mode "
            "and image size); import a paper checkpoint with `vpkit import-prompt` first, or use the run's own "
            "checkpoint"
        )
    prompter = prompter_from_config(spec)
    load_checkpoint_tensors(prompter, path, state, run_dir if config is not None else None)
    return TrainedPrompt(prompter.to(device).eval(), metadata, config, path)


def check_prompt_fits(prompter, scorer, source) -> None:
    if prompter.image_size != scorer.image_size:
        raise ValueError(
            f"{source}: the prompt was trained for {prompter.image_size} px inputs but this model sees "
            f"{scorer.image_size} px; evaluate with the model it was trained with (--model)"
        )


# ------------------------------------------------------------------------- scoring files


@torch.no_grad()
def score_image_files(
    scorer,
    prompter,
    paths: Iterable[str | Path],
    device: str,
    amp: str = "none",
    batch_size: int = 8,
    method: str = "resize_crop",
    progress: bool = True,
) -> pd.DataFrame:
    """Score image files (any size; prepared like the training images); columns path, score, error.

    A file that cannot be scored (missing, a folder, not an image, pixels of unknown range) gets score NaN and
    the reason in `error` (empty for the files that were scored); the other files are scored all the same.
    """
    from vpkit.data.images import ImageError

    paths = [Path(path) for path in paths]
    scores = np.full(len(paths), np.nan, dtype=np.float32)
    errors = [""] * len(paths)
    for start in tqdm(range(0, len(paths), batch_size), desc="scoring", leave=False, disable=not progress):
        ready, arrays = [], []
        for index in range(start, min(start + batch_size, len(paths))):
            try:
                arrays.append(_prepared_file(paths[index], scorer.image_size, method))
                ready.append(index)
            except (ImageError, OSError) as error:
                errors[index] = str(error).removeprefix(f"{paths[index]}: ")
        if arrays:
            images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
            with autocast(device, amp):
                scores[ready] = scorer(to_model_input(images, device), prompter).float().cpu().numpy()
    return pd.DataFrame({"path": [str(path) for path in paths], "score": scores, "error": errors})


def _prepared_file(path: Path, size: int, method: str) -> np.ndarray:
    from vpkit.data.images import ImageError, prepare_image

    if path.is_dir():
        raise ImageError(f"{path}: is a folder with no image files in it or below")
    if not path.exists():
        raise ImageError(f"{path}: not found")
    return prepare_image(path, size, method=method)


# ------------------------------------------------------------------------- whole datasets


def limit_table(table, limit: int, seed: int, split: str | None = None):
    """A copy of `table` with at most `limit` images per split, or in `split` ('all': in the whole table).

    The images are a fixed random sample (seeded), so quick runs see a spread of qualities.
    """
    import copy

    frame = table.frame if split in (None, "all") else table.rows(split)
    groups = [frame] if split is not None else [part for _, part in frame.groupby("split", sort=False)]
    parts = [part.sample(n=limit, random_state=seed) if len(part) > limit else part for part in groups]
    limited = copy.copy(table)
    limited.frame = pd.concat(parts).sort_index()
    return limited


def _recorded_model(trained: TrainedPrompt | None) -> dict:
    """The model settings a trained prompt's run (or checkpoint) recorded."""
    if trained is not None and trained.config is not None:
        run_model = trained.config.model
        return {
            "model": run_model.name_or_path,
            "dtype": run_model.dtype,
            "normalisation": run_model.normalisation,
            "score_type": run_model.score_type,
        }
    return trained.metadata if trained is not None else {}


def scorer_model(trained: TrainedPrompt | None, model: str | None = None) -> str:
    """The model `load_scorer_for` loads: `model` when given, else the one the prompt's run recorded."""
    model = model or _recorded_model(trained).get("model")
    if model is None:
        raise ValueError("no model given: pass --model (tiny, tiny-random or a model folder)")
    return model


def load_scorer_for(
    trained: TrainedPrompt | None,
    device: str,
    model: str | None = None,
    dtype: str | None = None,
    normalisation: str | None = None,
    score_type: str | None = None,
):
    """The scorer a trained prompt belongs to (explicit arguments win over what the run recorded)."""
    from vpkit.models import load_scorer
    from vpkit.scoring import DEFAULT_SCORE_TYPE

    recorded = _recorded_model(trained)
    model = scorer_model(trained, model)
    dtype = model_dtype_on(device, dtype or recorded.get("dtype") or "fp32")
    return load_scorer(
        model,
        dtype=dtype,
        device=device,
        normalisation=normalisation or recorded.get("normalisation"),
        score_type=score_type or recorded.get("score_type") or DEFAULT_SCORE_TYPE,
    )


def split_table(dataset: str, root: str | Path, split: str = "test", *, split_scheme: str = "paper",
                layout: str = "auto", limit: int | None = None, seed: int = 42):
    """`dataset`'s table, split by `split_scheme`, with at most `limit` images of `split` (a seeded sample)."""
    from vpkit.data import load_table

    table = load_table(dataset, root, layout=layout, split=split_scheme, seed=seed)
    if table.rows(split).empty:
        raise ValueError(
            f"{dataset} at {root}: no images in split '{split}' ({table.split_counts()}); "
            "use --subset all to score every image"
        )
    return limit_table(table, limit, seed, split=split) if limit is not None else table


def predict_split(model, table, split: str, image_size: int, *, method: str = "resize_crop", batch_size: int = 32,
                  device: str = "cpu", amp: str = "none", seed: int = 42, cache_dir: str | None = None,
                  num_workers: int | None = None, progress: bool = True, desc: str = "scoring",
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
    """`predict` over the images of `table`'s `split`, with each image's mos beside its label."""
    from vpkit.data import make_loader

    loader = make_loader(table, split, image_size, batch_size, train=False, method=method, cache_dir=cache_dir,
                         num_workers=num_workers, seed=seed, progress=progress)
    predictions = predict(model, loader, device, amp, progress, desc, columns)
    mos = table.frame.set_index("name")["mos"]
    predictions.insert(1, "mos", mos.loc[predictions["name"]].to_numpy())
    return predictions


def evaluate_on_dataset(
    scorer,
    prompter,
    dataset: str,
    root: str | Path,
    split: str = "test",
    *,
    split_scheme: str = "paper",
    layout: str = "auto",
    method: str = "resize_crop",
    batch_size: int = 32,
    device: str = "cpu",
    amp: str = "none",
    limit: int | None = None,
    seed: int = 42,
    cache_dir: str | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[dict, pd.DataFrame]:
    """Metrics and predictions (name, mos, label, score) of a prompt (or none: zero-shot) on a dataset split.

    `split` is train|val|test, or `all` for every image (cross-dataset tests).
    """
    table = split_table(dataset, root, split, split_scheme=split_scheme, layout=layout, limit=limit, seed=seed)
    if prompter is not None:
        check_prompt_fits(prompter, scorer, "prompt")
    predictions = predict_split(
        PromptedScorer(scorer, prompter), table, split, scorer.image_size, method=method, batch_size=batch_size,
        device=device, amp=amp, seed=seed, cache_dir=cache_dir, num_workers=num_workers, progress=progress,
        desc=f"{dataset} {split}",
    )
    metrics = correlation_metrics(predictions)
    metrics.update({"dataset": dataset, "split": split, "n_images": len(predictions)})
    return metrics, predictions
