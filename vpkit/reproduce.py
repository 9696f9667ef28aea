"""Running the reproduction: the notebooks' side effects (folders, demo data, training, zero-shot scoring) and
`vpkit reproduce`, which runs the notebooks with papermill.

What to run, with which settings, into which folders is vpkit.plan's (the notebooks' parameters, the experiments
of each notebook, their configs); this module does it. The notebooks (vpkit/notebooks, `notebooks/` in a clone)
only call vpkit.plan, this module, vpkit.tables and vpkit.plots. Each starts with a papermill `parameters` cell
(vpkit.plan.PARAMETERS) and passes it to `notebook_settings`. `vpkit reproduce --profile demo|released|paper`
runs them in order with the parameters of vpkit/configs/profiles/<profile>.yaml (the released profile first
imports and tests the paper's released prompts, `released_runs`, so nothing is trained), into

    OUT/runs/<experiment>/   one run folder per experiment (vpkit.runs), and one per mul_residual variant
    OUT/tables/*.csv         zero-shot scores and the paper's tables
    OUT/zero_shot/*.json     each dataset's zero-shot scores with the settings that decide them (reused)
    OUT/figures/*.png        every figure the notebooks draw
    OUT/notebooks/*.ipynb    the executed notebooks

`mul_residual` lists paper mul experiments (22-33) that the notebook training them also trains with prompt
mode mul_residual, x * (1 + p), after the paper's runs: vpkit's fix of the paper's mul, which blacks the image
out. Such a run is experiment N in another mode, named exp_NN_..._mul_residual (vpkit.config.paper_config with
a mode), never a paper experiment: vpkit.tables keeps it apart from the paper's result of N.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from vpkit.plan import (
    CALLER_VARIABLE,
    COMMAND_LINE,
    DEMO_DATA,
    DEMO_DATA_FOLDER,
    OUTPUT_PARAMETERS,
    PARAMETER_OF_FIELD,
    PARAMETERS,
    ReproduceError,
    RunSettingsError,
    Settings,
    caller,
    check_parameters,
    demo_data_made,
    existing_data_root,
    experiment_config,
    experiment_configs,
    how_to_set,
    named,
    option,
    plan_settings,
)
from vpkit.resources import package_path

NOTEBOOKS_DIR = package_path("notebooks")
PROFILES_DIR = package_path("configs", "profiles")
NOTEBOOKS = ("00_data", "01_zero_shot", "02_train_padding", "03_train_patches", "04_train_full", "05_tables",
             "06_prompt_gallery")
KERNEL_NAME = "python3"
# The kernel's start-up warning about unencrypted local TCP says nothing about the notebook; errors still show.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]

# slurm: read by vpkit.sweep; released: a Hub repository of the paper's released prompts, imported and tested
# (released_runs) instead of trained
PROFILE_KEYS = ("description", "required", "parameters", "slurm", "released")


# ----------------------------------------------------------------------------- profiles


@dataclass
class Profile:
    """A reproduction profile: notebook parameters, and those the command line must supply."""

    name: str
    path: Path
    description: str
    parameters: dict
    required: tuple[str, ...]
    released: str | None = None  # Hub repository of released prompts to test instead of training


def profile_path(name_or_path: str | Path) -> Path:
    """The shipped profile <name>.yaml for a bare name, else the given file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        return path
    return PROFILES_DIR / f"{name_or_path}.yaml"


def load_profile(name_or_path: str | Path) -> Profile:
    """A validated profile (`demo`, `paper` or a YAML file with description, required, parameters)."""
    path = profile_path(name_or_path)
    if not path.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise ReproduceError(f"{path}: no such profile; known profiles: {', '.join(known) or 'none'} "
                             "(or give a YAML file path)")
    from vpkit.config import load_yaml_file

    data = load_yaml_file(path, ReproduceError)
    if not isinstance(data, dict):
        raise ReproduceError(f"{path}: a profile is a mapping with keys {', '.join(PROFILE_KEYS)}")
    unknown = sorted(set(data) - set(PROFILE_KEYS))
    if unknown:
        raise ReproduceError(f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(PROFILE_KEYS)}")
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ReproduceError(f"{path}: 'parameters' must be a mapping of notebook parameters to values")
    outputs = sorted(set(parameters) & set(OUTPUT_PARAMETERS))
    if outputs:
        raise ReproduceError(f"{path}: parameters.{outputs[0]} is set by `vpkit reproduce --out`; remove it")
    required = data.get("required") or []
    if not isinstance(required, list) or not set(required) <= set(PARAMETERS) - set(OUTPUT_PARAMETERS):
        raise ReproduceError(f"{path}: 'required' must list parameter names, e.g. [model, data_root]")
    given = {k: v for k, v in parameters.items() if not (k in required and v is None)}  # null: from the CLI
    parameters = {**parameters, **check_parameters(given, f"{path}: parameters")}
    missing = sorted(set(PARAMETERS) - set(OUTPUT_PARAMETERS) - set(parameters) - set(required))
    if missing:
        raise ReproduceError(f"{path}: parameters.{missing[0]} is missing; give a value (null where allowed) "
                             "or list it under 'required'")
    released = data.get("released")
    if released is not None and not (isinstance(released, str) and released.count("/") == 1):
        raise ReproduceError(f"{path}: 'released' must be a Hub repository id ORG/NAME, e.g. "
                             "yahya007/mplug2-vp-for-nriqa")
    return Profile(path.stem, path, str(data.get("description", "")), parameters, tuple(required), released)


def profile_parameters(profile: Profile, overrides: dict, out_dir: str | Path) -> dict:
    """The notebook parameters of a run: the profile's, then `overrides` (None = keep), paths absolute."""
    merged = dict(profile.parameters)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    missing = [name for name in profile.required if merged.get(name) is None]
    if missing:
        options = " and ".join(option(name) for name in missing)
        raise ReproduceError(f"profile '{profile.name}' ({profile.path}) needs {options} on the command line "
                             "(e.g. --model MAGAer13/mplug-owl2-llama2-7b --data-root data)")
    out_dir = Path(out_dir).expanduser().resolve()
    merged["out_dir"] = str(out_dir)
    merged["figures_dir"] = str(out_dir / "figures")
    if merged["data_root"] != DEMO_DATA:  # checked here, before any notebook runs
        merged["data_root"] = str(existing_data_root(merged["data_root"]))
    if Path(merged["model"]).expanduser().exists():
        merged["model"] = str(Path(merged["model"]).expanduser().resolve())
    checked = check_parameters(merged, f"profile '{profile.name}' with command-line options")
    left_out = [n for n in checked["mul_residual"] if checked["experiments"] is not None
                and n not in checked["experiments"]]
    if left_out:  # said once here, not by each notebook
        print(f"note: mul_residual {', '.join(map(str, left_out))} will not be trained: a variant is trained with its "
              f"experiment, and experiments = {checked['experiments']} leaves it out; add it to --experiments, or "
              "pass --mul-residual none to silence this")
    return checked


# ----------------------------------------------------------------------------- notebook settings


def notebook_settings(*, progress: bool = True, device_here: bool = True, **parameters) -> Settings:
    """A notebook's settings (vpkit.plan.plan_settings, every parameter given), with the output folders made and,
    for data_root="demo", the demo set. The device is resolved on this machine unless device_here=False, which
    keeps it as asked (cpu, cuda, cuda:N, auto) for a job that resolves it on its own node."""
    settings = plan_settings(parameters, resolve_device=device_here)
    for folder in (settings.runs_dir, settings.tables_dir, settings.figures_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if settings.demo_data:
        ensure_demo_data(settings.data_root, progress=progress)
    return settings


def ensure_demo_data(root: Path, progress: bool = True) -> Path:
    """The synthetic KADID-style demo set under `root` (160 references x 5 demo distortions x 5 levels, so the
    held-out test split has 16 references and 400 images), made if absent."""
    from vpkit.data.synth import DEFAULT_N_REFS, DEMO_DISTORTIONS, generate

    if not demo_data_made(root):
        print(f"making the synthetic demo set in {root} (about 450 MB and a minute on 2 cores; scores are "
              f"synthetic, not human opinions): data_root = {DEMO_DATA!r} uses out_dir/{DEMO_DATA_FOLDER}, and "
              f"this out_dir has none yet; to share another folder's set, set data_root to its {DEMO_DATA_FOLDER}")
        generate(root, n_refs=DEFAULT_N_REFS, distortions=DEMO_DISTORTIONS, progress=progress)
    return root


# ----------------------------------------------------------------------------- experiments


def run_experiments(numbers: Iterable[int], settings: Settings,
                    callback_for: Callable[[str], Callable[[dict], None]] | None = None,
                    progress: bool = True, mul_residual: Iterable[int] = ()) -> pd.DataFrame:
    """Train each experiment into settings.runs_dir/<name>, then each of `mul_residual` in that mode (finished
    runs of the same settings are reused, stopped ones resumed); `callback_for(name)` gives the per-epoch
    callback, which also receives a reused run's recorded epochs (so live curves show it). Returns
    vpkit.runs.collect_runs of them."""
    from vpkit.provenance import read_record
    from vpkit.runs import RunFolderError, collect_runs, lock_run_dir, read_metrics, run_status
    from vpkit.train import train

    run_dirs = []
    for config in experiment_configs(numbers, settings, mul_residual):
        run_dir = settings.runs_dir / config.name
        callbacks = [callback_for(config.name)] if callback_for is not None else []
        with lock_run_dir(run_dir):  # no other process may finish or change the run between check and training
            check_finished_run(config, run_dir)
            if run_status(run_dir) == "finished":
                made = "imported" if (read_record(run_dir) or {}).get("kind") == "import" else "trained"
                print(f"{config.name}: {made} earlier with these settings, reused (delete {run_dir} to train "
                      "it again)")
                for row in read_metrics(run_dir):
                    for callback in callbacks:
                        callback(row)
            else:
                try:
                    train(config, run_dir, resume=True, callbacks=callbacks, progress=progress)
                except RunFolderError as error:  # its advice names `vpkit train` options; here it is a folder
                    raise ReproduceError(f"{error} (from a notebook: delete {run_dir} and run this cell again "
                                         "to start it afresh)") from None
        run_dirs.append(run_dir)
    return collect_runs(run_dirs) if run_dirs else pd.DataFrame(columns=["run", "name", "status"])


def trained_runs(settings: Settings) -> list[Path]:
    """Run folders under settings.runs_dir with a best prompt, of settings.experiments when set (a mul_residual
    variant has its experiment's number, so it comes with it)."""
    from vpkit.runs import BEST_CHECKPOINT, collect_runs

    runs = collect_runs(settings.runs_dir)
    if not runs.empty and settings.experiments is not None:
        runs = runs[runs["number"].isin(settings.experiments)]
    found = [] if runs.empty else [Path(run) for run in runs["run"] if (Path(run) / BEST_CHECKPOINT).is_file()]
    if not found:  # a notebook that exists to show runs must not pass showing none
        which = f" of experiments {settings.experiments}" if settings.experiments is not None else ""
        raise ReproduceError(f"{settings.runs_dir}: no trained run{which} here; run notebooks 02-04 (or `vpkit "
                             f"reproduce`) with these parameters first, or point {named('out_dir')} at the folder that "
                             "holds them")
    return found


def check_finished_run(config, run_dir: Path, who: str | None = None) -> None:
    """Refuse to reuse a finished or stopped run that was trained with other settings (train() would just report
    or continue it), naming the parameters that differ and the values that would reuse it, the way `who`
    (vpkit.plan.caller() by default) sets them."""
    from vpkit.runs import compare_with_run, read_config, run_status

    if run_status(run_dir) not in ("finished", "partial"):
        return
    device = config.train.device
    if device == "auto":  # left to the job that trains it (vpkit sweep --slurm): compared as the run recorded it
        device = read_config(run_dir).train.device
    comparison = compare_with_run(run_dir, config, device)
    if comparison.same:
        return
    changed = [(section, key) for section, key in comparison.changed() if key is not None]
    raise RunSettingsError(_mismatch_message(run_dir, run_status(run_dir), changed, comparison.recorded.to_dict(),
                                             comparison.expected.to_dict(), who or caller()))


def _mismatch_message(run_dir: Path, status: str, changed: list, old: dict, new: dict, who: str) -> str:
    """One line: what differs (as parameters where one sets it, the way `who` sets them) and how to reuse or
    retrain."""
    parameters = [(PARAMETER_OF_FIELD[field], old[field[0]][field[1]], new[field[0]][field[1]])
                  for field in changed if field in PARAMETER_OF_FIELD]
    others = [f"{section}.{key} {old[section].get(key)!r} there, {new[section][key]!r} now"
              for section, key in changed if (section, key) not in PARAMETER_OF_FIELD]
    here_is = "now" if who == COMMAND_LINE else "in this notebook"
    differences = [f"{named(name, who)} {'' if who == COMMAND_LINE else '= '}{there!r} there, {here!r} {here_is}"
                   for name, there, here in parameters]
    what = "; ".join(differences + others) or "none visible (a different vpkit version?)"
    reuse = (f"to reuse it, {how_to_set({name: there for name, there, _ in parameters}, who)}; "
             if parameters and not others else "")
    state = "finished" if status == "finished" else "stopped part-way"
    retrain = "give another --out" if who == COMMAND_LINE else "set out_dir to another folder"
    return (f"{run_dir}: this experiment was already trained there ({state}) with other settings ({what}); {reuse}"
            f"to train it with these settings, {retrain} or delete that run folder")


# ----------------------------------------------------------------------------- the paper's released prompts


def released_runs(settings: Settings, repo_id: str, revision: str | None = None, progress: bool = True) -> list[int]:
    """Import the paper's released prompts from the Hub repository `repo_id` into settings.runs_dir, each as a run
    of its experiment with these settings, and score each on its test split with settings.model (test.json and
    predictions.csv, as a trained run has them), so the notebooks find them finished. Returns the experiments
    (of settings.experiments, all when None) that now have a tested run; the archive's missing ones are said."""
    from vpkit.config import PAPER_EXPERIMENTS, resolve_for_model
    from vpkit.paper import import_released
    from vpkit.runs import TEST_FILE

    wanted = settings.experiments or [exp.number for exp in PAPER_EXPERIMENTS]
    names = {number: experiment_config(number, settings).name for number in wanted}
    if all((settings.runs_dir / name / TEST_FILE).is_file() for name in names.values()):
        return list(wanted)
    from vpkit.device import HALF_PRECISION, model_dtype_on
    from vpkit.models import load_scorer

    dtype = model_dtype_on(settings.device, HALF_PRECISION)  # the paper's precision where it is used
    scorer = load_scorer(settings.model, dtype=dtype, device=settings.device)

    def config_for(number: int):
        return resolve_for_model(experiment_config(number, settings), scorer.image_size, settings.device)[0]

    result = import_released(settings.runs_dir, repo_id, revision=revision, config_for=config_for, only=wanted)
    lacking = [number for number in wanted if number in result.missing]
    if lacking:
        print(f"the released archive of {repo_id} lacks experiment(s) {', '.join(map(str, lacking))}: they have no "
              "released prompt to test")
    runs = {**result.kept, **result.imported}
    for number in sorted(runs):
        if not (runs[number] / TEST_FILE).is_file():
            _test_released(runs[number], scorer, settings, progress)
    return sorted(runs)


def _test_released(run_dir: Path, scorer, settings: Settings, progress: bool) -> None:
    """Score an imported run's prompt on its experiment's test split; write predictions.csv and test.json."""
    from vpkit.atomic import json_safe, write_csv_atomic, write_json_atomic
    from vpkit.evaluate import evaluate_on_dataset, load_trained_prompt
    from vpkit.runs import PREDICTIONS_FILE, TEST_FILE, lock_run_dir, read_config, read_state

    with lock_run_dir(run_dir):
        config, state = read_config(run_dir), read_state(run_dir)
        trained = load_trained_prompt(run_dir, settings.device)
        data = config.dataset
        metrics, predictions = evaluate_on_dataset(
            scorer, trained.prompter, data.name, data.root, "test", split_scheme=data.split, layout=data.layout,
            method=data.preprocess, batch_size=config.train.eval_batch_size, device=settings.device,
            amp=config.train.amp, limit=config.train.limit, seed=config.train.seed, progress=progress)
        metrics.update({"best_epoch": state.best_epoch, "epochs_run": state.epoch, "config_hash": config.hash(),
                        "released": trained.metadata.get("imported_from")})
        write_csv_atomic(run_dir / PREDICTIONS_FILE, predictions)
        write_json_atomic(run_dir / TEST_FILE, json_safe(metrics))
    print(f"{config.name}: released prompt, test SRCC {metrics['srcc']:.4f}, PLCC {metrics['plcc']:.4f}")


# ----------------------------------------------------------------------------- zero-shot


def zero_shot_scores(settings: Settings, datasets: Iterable[str], split: str = "test", progress: bool = True,
                     recompute: bool = False) -> pd.DataFrame:
    """The frozen model without a prompt on each dataset's split: SRCC, PLCC, KRCC per score type
    (every type of vpkit.scoring, plus Q-Align's weighted levels).

    Each dataset's scores are kept in OUT/zero_shot/<dataset>_<split>.json with the settings that decide them
    (zero_shot_key), and shown from there while those stay the same; `recompute` (or deleting the file) scores
    again."""
    from vpkit.atomic import write_json_atomic
    from vpkit.device import HALF_PRECISION, amp_on, model_dtype_on
    from vpkit.evaluate import split_table

    dtype = model_dtype_on(settings.device, HALF_PRECISION)  # the paper's precision where it is used
    scorer, frames = None, []
    for dataset in datasets:
        table = split_table(dataset, settings.data_root, split, limit=settings.limit, seed=settings.seed)
        path = settings.out_dir / ZERO_SHOT_FOLDER / f"{dataset}_{split}.json"
        key = zero_shot_key(settings, dataset, split, table, dtype)
        frame = None if recompute else _cached_zero_shot(path, key)
        if frame is None:
            if scorer is None:
                from vpkit.models import load_scorer

                scorer = load_scorer(settings.model, dtype=dtype, device=settings.device)
            frame = _zero_shot_frame(scorer, table, dataset, settings, split, amp_on(settings.device, HALF_PRECISION),
                                     progress)
            records = frame.to_dict("split")
            write_json_atomic(path, {"settings": key, "image_size": scorer.image_size, "columns": records["columns"],
                                     "dtypes": {name: str(kind) for name, kind in frame.dtypes.items()},
                                     "data": records["data"]})
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


ZERO_SHOT_FOLDER = "zero_shot"  # under out_dir: each dataset's zero-shot scores with the settings that decide them


def zero_shot_key(settings: Settings, dataset: str, split: str, table, dtype: str) -> dict:
    """What decides a dataset's zero-shot scores: the model and its source (a folder's or preset's fingerprint,
    which covers its config and so its image size), the images scored (name, split, label: the data, split and
    limit), the seed, device, dtype and batch size, and the score types."""
    from vpkit.provenance import model_source
    from vpkit.runs.data_identity import data_images, images_fingerprint
    from vpkit.scoring import SCORE_TYPES

    return {"model": settings.model, "model_source": model_source(settings.model), "dataset": dataset,
            "data_root": str(settings.data_root), "split": split, "limit": settings.limit,
            "images": images_fingerprint(data_images(table.rows(split))), "seed": settings.seed,
            "device": settings.device, "dtype": dtype, "batch_size": settings.batch_size or 32,
            "score_types": [*SCORE_TYPES, "qalign"]}


def _cached_zero_shot(path: Path, key: dict) -> pd.DataFrame | None:
    """The scores kept in `path` when they were made with `key`'s settings (said either way), else None."""
    import json

    if not path.is_file():
        return None
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        frame = pd.DataFrame(kept["data"], columns=kept["columns"]).astype(kept["dtypes"])
        recorded = kept["settings"]
    except (ValueError, KeyError, TypeError):
        print(f"{path}: not a zero-shot result vpkit can read; scoring again")
        return None
    changed = [name for name in key if recorded.get(name) != key[name]]
    if changed:
        print(f"{path}: scored with other settings ({', '.join(changed)} differ); scoring again")
        return None
    print(f"{key['dataset']}: zero-shot scores reused from {path}, made earlier with these settings (delete it, or "
          "pass recompute=True to zero_shot_scores, to score again)")
    return frame


def _zero_shot_frame(scorer, table, dataset: str, settings: Settings, split: str, amp: str,
                     progress: bool) -> pd.DataFrame:
    """Score `table`'s split with the frozen model (vpkit.evaluate.predict_split over the score words' logits),
    then every score type from those logits."""
    import numpy as np
    import torch

    from vpkit.evaluate import predict_split

    words = scorer.score_word_list
    columns = [f"logit {word}" for word in words]
    predictions = predict_split(scorer.word_logits, table, split, scorer.image_size,
                                batch_size=settings.batch_size or 32, device=settings.device, amp=amp,
                                seed=settings.seed, progress=progress, desc=f"zero-shot {dataset}", columns=columns)
    logits = torch.tensor(predictions[columns].to_numpy(dtype=np.float32))
    mos = predictions["mos"].to_numpy(dtype=np.float64)
    frame = _score_type_metrics(logits, mos, words)
    frame.insert(0, "dataset", dataset)
    frame["split"], frame["n_images"], frame["model"] = split, len(mos), settings.model
    return frame


def _score_type_metrics(logits, mos, words: tuple[str, ...]) -> pd.DataFrame:
    from vpkit.metrics import MetricInputError, krcc, plcc, srcc
    from vpkit.scoring import (
        QALIGN_WORDS,
        SCORE_TYPES,
        ScoreWordError,
        qalign_score,
        score_from_logits,
        score_indices,
    )

    rows = []
    for score_type in [*SCORE_TYPES, "qalign"]:
        row = {"score_type": score_type, "srcc": float("nan"), "plcc": float("nan"), "krcc": float("nan"),
               "note": ""}
        try:
            if score_type == "qalign":
                missing = [w for w in QALIGN_WORDS if w not in words]
                if missing:
                    raise ScoreWordError(f"{missing} not single tokens of this model")
                scores = qalign_score(logits, [words.index(w) for w in QALIGN_WORDS])
            else:
                scores = score_from_logits(logits, *score_indices(score_type, words))
            pred = scores.numpy()
            row.update(srcc=srcc(pred, mos), plcc=plcc(pred, mos), krcc=krcc(pred, mos))
        except (ScoreWordError, MetricInputError) as error:
            row["note"] = str(error).splitlines()[0]
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- running the notebooks


def notebook_paths(notebooks_dir: str | Path = NOTEBOOKS_DIR, only: Iterable[str] | None = None) -> list[Path]:
    """The notebooks to run, in order; `only` holds prefixes such as "00" or "05_tables"."""
    folder = Path(notebooks_dir)
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ReproduceError(f"{folder}: no notebooks (NN_name.ipynb) here; pass --notebooks DIR")
    if only:
        wanted = [str(item).strip() for item in only if str(item).strip()]
        unmatched = [w for w in wanted if not any(p.stem.startswith(w) for p in paths)]
        if unmatched:
            raise ReproduceError(f"--only {','.join(unmatched)} matches no notebook in {folder}; "
                                 f"there are: {', '.join(p.stem for p in paths)}")
        paths = [p for p in paths if any(p.stem.startswith(w) for w in wanted)]
    return paths


def run_notebook(source: Path, target: Path, parameters: dict, stream_output: bool = False) -> float:
    """Execute one notebook with papermill into `target`; returns seconds. `stream_output` copies the
    cells' printed output to this process's stdout/stderr (else a progress bar over the cells). A failing
    cell raises ReproduceError naming the notebook, the cell and the error (the executed notebook is kept).
    The notebook's messages name the command-line options, not its parameters cell (vpkit.plan.caller)."""
    import os
    import sys

    import papermill

    streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if stream_output else {}
    started = time.perf_counter()
    before = os.environ.get(CALLER_VARIABLE)
    os.environ[CALLER_VARIABLE] = COMMAND_LINE  # the kernel papermill starts inherits this process's environment
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, kernel_name=KERNEL_NAME,
                                   progress_bar=not stream_output, cwd=str(target.parent),
                                   extra_arguments=KERNEL_ARGUMENTS, **streams)
    except papermill.PapermillExecutionError as error:
        cell = _source_cell_number(source, error)
        raise ReproduceError(
            f"{source} failed in cell {cell} (In [{error.exec_count}]): {error.ename}: {error.evalue}\n"
            f"the executed notebook with the traceback is {target}") from None
    finally:
        if before is None:
            os.environ.pop(CALLER_VARIABLE, None)
        else:
            os.environ[CALLER_VARIABLE] = before
    return time.perf_counter() - started


def _source_cell_number(source: Path, error) -> int:
    """1-based number of the failing cell in the source notebook (papermill's index counts injected cells)."""
    import nbformat

    cells = nbformat.read(str(source), as_version=4).cells
    for number, cell in enumerate(cells, start=1):
        if cell.cell_type == "code" and cell.source.strip() == str(error.source).strip():
            return number
    return error.cell_index + 1


def run_notebooks(parameters: dict, out_dir: str | Path, notebooks_dir: str | Path = NOTEBOOKS_DIR,
                  only: Iterable[str] | None = None, stream_output: bool = False,
                  echo: Callable[[str], None] = print) -> dict[str, float]:
    """Run the notebooks in order into out_dir/notebooks/; returns seconds per notebook."""
    paths = notebook_paths(notebooks_dir, only)
    executed_dir = Path(out_dir) / "notebooks"
    executed_dir.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for index, path in enumerate(paths, start=1):
        echo(f"[{index}/{len(paths)}] {path.name} ...")
        seconds[path.stem] = run_notebook(path, executed_dir / path.name, parameters, stream_output)
        echo(f"[{index}/{len(paths)}] {path.name} done in {seconds[path.stem]:.1f} s")
    return seconds


# ----------------------------------------------------------------------------- command line


def register(subparsers) -> argparse.ArgumentParser:
    """Add `vpkit reproduce` to the vpkit command line."""
    parser = subparsers.add_parser("reproduce", help="run the notebooks in order (profiles demo, released, paper)")
    parser.add_argument("--profile", default="demo",
                        help="demo (tiny model, generated data, CPU, minutes), released (the paper's released "
                             "prompts tested; needs --data-root), paper (all 33 trained; needs --data-root), or a "
                             "profile YAML file")
    parser.add_argument("--out", help="output folder (default: reproduce/<profile>)")
    parser.add_argument("--model", help="tiny, tiny-random, a model folder or a Hub id ORG/NAME")
    parser.add_argument("--revision", help="the Hub revision (branch, tag or commit) of --model or the profile's "
                        "model")
    parser.add_argument("--data-root", help="folder with the datasets, or 'demo'")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--experiments", help="comma-separated paper experiment numbers (default: the profile's)")
    parser.add_argument("--mul-residual", help="comma-separated mul experiments also trained with prompt "
                        "mode mul_residual, or none (default: the profile's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--limit", type=int, help="at most N images per split")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--extra-seeds", help="experiments also trained with more seeds, for a mean and range, "
                        "e.g. 4:1,2 (default: the profile's; demo 4:1,2), or none")
    parser.add_argument("--only", help="comma-separated notebook prefixes, e.g. 00,05")
    parser.add_argument("--notebooks", help="folder of the notebooks (default: the repository's notebooks/)")
    parser.add_argument("--verbose", action="store_true", help="show the notebooks' output as they run")
    parser.set_defaults(handler=_run_reproduce)
    return parser


def _run_reproduce(args) -> int:
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ReproduceError("vpkit reproduce runs the notebooks once, not under torchrun; to train each experiment "
                             "on several GPUs run `vpkit sweep --gpus 0,1,2,3 --gpus-per-experiment 4` first "
                             "(same profile and --out), then vpkit reproduce")
    from vpkit.runs import lock_run_dir

    profile = load_profile(args.profile)
    out_dir = Path(args.out) if args.out else Path("reproduce") / profile.name
    overrides = profile_overrides(args)
    if args.revision:
        from vpkit.hub import with_revision

        overrides["model"] = with_revision(overrides["model"] or profile.parameters.get("model") or "", args.revision)
    parameters = profile_parameters(profile, overrides, out_dir)
    only = args.only.split(",") if args.only else None
    # One reproduction per output folder: a second one would build the same demo data and train the same runs
    # beside this one. The run folders inside keep their own locks (a notebook opened by hand, vpkit sweep).
    with lock_run_dir(parameters["out_dir"], busy_fix="wait for it to finish, or give another --out"):
        print(f"vpkit reproduce: profile {profile.name} -> {parameters['out_dir']}")
        if profile.released:
            settings = notebook_settings(**parameters)
            tested = released_runs(settings, profile.released)
            if not tested:
                raise ReproduceError(f"{profile.released}: its released archive holds none of experiments "
                                     f"{settings.experiments}; choose others with --experiments")
            parameters["experiments"] = tested  # the notebooks then report these runs and train nothing
            print(f"  the paper's released prompts of {profile.released}: experiments {', '.join(map(str, tested))}")
        print("  " + ", ".join(f"{k}={v}" for k, v in parameters.items() if k not in OUTPUT_PARAMETERS))
        started = time.perf_counter()
        seconds = run_notebooks(parameters, parameters["out_dir"], args.notebooks or NOTEBOOKS_DIR, only, args.verbose)
    total = time.perf_counter() - started
    print(f"done: {len(seconds)} notebook(s) in {total:.1f} s wall time; runs/, tables/, figures/ and the "
          f"executed notebooks/ are in {parameters['out_dir']}")
    return 0


def profile_overrides(args) -> dict:
    """The notebook parameters that `vpkit reproduce` and `vpkit sweep` options set (None: the profile's)."""
    return {"model": args.model, "data_root": args.data_root, "device": args.device, "epochs": args.epochs,
            "batch_size": args.batch_size, "lr": args.lr, "limit": args.limit, "seed": args.seed,
            "experiments": _number_list(args.experiments),
            "mul_residual": _number_list(args.mul_residual, "--mul-residual"),
            "extra_seeds": _seed_map(getattr(args, "extra_seeds", None))}


def _seed_map(text: str | None) -> dict[int, list[int]] | None:
    """--extra-seeds "4:1,2;5:1" -> {4: [1, 2], 5: [1]}; "none" -> {}."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return {}
    try:
        return {int(number): [int(seed) for seed in seeds.split(",") if seed.strip()]
                for number, seeds in (part.split(":") for part in text.split(";") if part.strip())}
    except ValueError:
        raise ReproduceError(f"--extra-seeds {text!r}: give EXPERIMENT:SEED,SEED;..., e.g. 4:1,2, or none") from None


def _number_list(text: str | None, flag: str = "--experiments") -> list[int] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ReproduceError(f"{flag} {text!r}: give comma-separated numbers, e.g. 4,22,10, or none") \
            from None
