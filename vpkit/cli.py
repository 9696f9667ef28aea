"""`vpkit ...`: the command line, thin over vpkit.config, vpkit.train, vpkit.evaluate and vpkit.runs.

vpkit experiments                         the paper's 33 experiments
vpkit train 4 --model tiny --data-root D  train one (a number or a YAML file)
vpkit runs runs/                          what the runs under a folder got
vpkit eval RUN --dataset koniq ...        test a trained prompt (also cross-dataset, or --zero-shot)
vpkit score RUN a.jpg b.png --out s.csv   score your own images
vpkit import-prompt visual_prompt.pth ... the paper's released prompts -> a run folder
vpkit data ...                            dataset checks and the synthetic demo set
vpkit doctor --device cuda                this machine for a bug report, and every training path checked
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

from vpkit import __version__
from vpkit.data.images import METHODS as PREPROCESS_METHODS
from vpkit.data.specs import DATASETS, SPLIT_NAMES
from vpkit.data.splits import SPLIT_KINDS
from vpkit.vocabulary import PROMPT_MODES, PROMPT_TYPES, SHAPES

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vpkit", description="Pixel-level visual prompts for NR-IQA.")
    parser.add_argument("--version", action="version", version=f"vpkit {__version__}")
    parser.add_argument(
        "--traceback",
        "--verbose",
        dest="traceback",
        action="store_true",
        help="show the full traceback on errors (--traceback also works after the command)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _add_experiments(commands)
    _add_train(commands)
    _add_runs(commands)
    _add_eval(commands)
    _add_score(commands)
    _add_import_prompt(commands)
    _add_data(commands)
    _register(commands, "vpkit.sweep")  # `vpkit sweep`: many experiments, local GPUs or Slurm
    _add_doctor(commands)
    _add_reproduce(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 2 an error told in one line, 130 stopped by Ctrl-C).

    Every error is one line (what, which file or field, the fix); the traceback only with --traceback.
    """
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    show_traceback = "--traceback" in argv  # accepted after the command too, where users type it
    args = parser.parse_args([arg for arg in argv if arg != "--traceback"])
    show_traceback = show_traceback or args.traceback
    try:
        result = args.handler(args)
    except KeyboardInterrupt:
        if show_traceback:
            raise
        print(f"\nvpkit {args.command}: stopped; {resume_hint(args.command, argv)}", file=sys.stderr)
        return 130
    except Exception as error:
        if show_traceback:
            raise
        print(f"vpkit {args.command}: error: {error_line(error)}", file=sys.stderr)
        return 2
    return int(result or 0)


# Errors whose message vpkit wrote for the user (the file, the field and the fix); anything else is unexpected.
TOLD_ERRORS = (ValueError, RuntimeError, ArithmeticError, OSError)
# A temporary file of vpkit.atomic (.NAME.RANDOM.tmp): errors name its folder instead.
TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")
OS_ERROR_FIXES = {
    errno.ENOSPC: "free some disk space or write somewhere else, then run the command again",
    errno.EDQUOT: "free some of your disk quota or write somewhere else, then run the command again",
    errno.EFBIG: "the file system cannot hold a file this large; write somewhere else",
    errno.EACCES: "choose a location you can write to (or read), or fix its permissions",
    errno.EPERM: "choose a location you can write to (or read), or fix its permissions",
    errno.EROFS: "this file system is read-only; choose another location",
    errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
    errno.EISDIR: "this is a folder; give a file path",
    errno.EEXIST: "something else is already at this path; choose another path",
    errno.ENOENT: "check the path (its folder must exist and be writable)",
}


def error_line(error: BaseException) -> str:
    """One line for an error: vpkit's own message, an OS error with its path and the fix, or (unexpected) the
    exception's type and text with a pointer to --traceback."""
    if isinstance(error, OSError) and error.strerror:
        return _os_error_line(error)
    text = str(error)
    if isinstance(error, TOLD_ERRORS) and text.strip():
        return text
    return f"{type(error).__name__}: {text or 'no message'} (unexpected here; rerun with --traceback to see where)"


def _os_error_line(error: OSError) -> str:
    if error.filename is None:
        where = ""
    else:
        path = Path(os.fsdecode(error.filename))
        where = f"{path.parent if TEMP_FILE.match(path.name) else path}: "
    fix = OS_ERROR_FIXES.get(error.errno)
    return f"{where}{error.strerror}" + (f"; {fix}" if fix else "")


def resume_hint(command: str, argv: list[str]) -> str:
    """What to type to continue after Ctrl-C."""
    if command == "train":
        again = [arg for arg in argv if arg != "--overwrite"]
        if "--resume" not in again:
            again.append("--resume")
        return f"resume with: {shlex.join(['vpkit', *again])}"
    if command == "reproduce":
        return f"continue with the same command (finished runs are kept): {shlex.join(['vpkit', *argv])}"
    return "nothing was written (files are replaced whole or not at all); run the command again"


# ----------------------------------------------------------------------------- experiments


def _add_experiments(commands) -> None:
    parser = commands.add_parser("experiments", help="list the paper's 33 experiments")
    parser.add_argument(
        "--image-size",
        type=int,
        default=448,
        help="count trainable parameters at this input size (default 448, the paper's)",
    )
    parser.set_defaults(handler=_run_experiments)


def experiments_table(image_size: int = 448) -> pd.DataFrame:
    """The 33 experiments: number, name, dataset, prompt, size, mode, batch, epochs, trainable parameters."""
    from vpkit.config import PAPER_EXPERIMENTS, PAPER_IMAGE_SIZE, paper_config, scaled_prompt_size
    from vpkit.prompters import num_trainable_parameters, prompter_from_config

    rows = []
    for exp in PAPER_EXPERIMENTS:
        config = paper_config(exp.number)
        prompt = config.prompt
        size = None if prompt.size is None else scaled_prompt_size(prompt.size, PAPER_IMAGE_SIZE, image_size)
        prompter = prompter_from_config(prompt, size=size, image_size=image_size)
        rows.append(
            {
                "number": exp.number,
                "name": config.name,
                "dataset": exp.dataset,
                "prompt": SHAPES[exp.position].label,
                "size": "-" if size is None else size,
                "mode": prompt.mode,
                "batch": config.train.batch_size,
                "epochs": config.train.epochs,
                "parameters": num_trainable_parameters(prompter),
            }
        )
    return pd.DataFrame(rows)


def _run_experiments(args) -> int:
    print(experiments_table(args.image_size).to_string(index=False))
    return 0


# ----------------------------------------------------------------------------- train


def _add_train(commands) -> None:
    parser = commands.add_parser("train", help="train one experiment (a paper number 1..33 or a YAML file)")
    parser.add_argument(
        "experiment", help="paper experiment number (e.g. 4) or a config YAML (vpkit or paper style)"
    )
    parser.add_argument("--model", help="tiny, tiny-random, a model folder or a Hub id ORG/NAME (overrides "
                        "model.name_or_path)")
    parser.add_argument("--revision", help="the Hub revision (branch, tag or commit) of --model")
    parser.add_argument("--data-root", help="dataset root folder (overrides dataset.root)")
    parser.add_argument("--split-scheme", choices=SPLIT_KINDS, help="train/val/test split scheme")
    parser.add_argument("--preprocess", choices=PREPROCESS_METHODS)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--eval-batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--patience", type=int)
    parser.add_argument("--grad-accum", type=int)
    parser.add_argument(
        "--max-grad-norm", type=float, help="clip each step's gradient norm to this (default 1.0, the paper's)"
    )
    parser.add_argument(
        "--no-grad-clip", action="store_true", help="no gradient clipping (train.max_grad_norm: null)"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="model weights precision")
    parser.add_argument("--amp", choices=("none", "fp16", "bf16"), help="autocast precision (CUDA)")
    parser.add_argument(
        "--checkpointing",
        nargs="?",
        const="full",
        choices=("off", "full", "selective", "mixed"),
        help="activation checkpointing in the frozen model: full (the flag alone) recomputes every layer in "
        "backward (least memory, slowest); selective keeps matmul and attention outputs; mixed is full in the "
        "vision encoder, selective in the LLM (docs/cli.md)",
    )
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
        help="torch.compile the scorer (CUDA): the flag alone in torch's default mode, or a mode: reduce-overhead "
        "(CUDA graphs), max-autotune-no-cudagraphs ... (docs/cli.md)",
    )
    parser.add_argument(
        "--compile-cache-dir",
        help="where torch.compile keeps compiled graphs for later runs (default ~/.cache/vpkit/torch-compile)",
    )
    parser.add_argument(
        "--nondeterministic",
        dest="deterministic",
        action="store_false",
        default=None,
        help="allow torch's nondeterministic (faster) kernels; runs are then not bitwise repeatable",
    )
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:1 ...")
    parser.add_argument("--num-workers", type=int)
    parser.add_argument("--cache-dir", help="cache prepared images here (faster later epochs and runs)")
    parser.add_argument("--limit", type=int, help="use at most N images per split (quick runs)")
    parser.add_argument("--out", help="run folder (default runs/<experiment name>)")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run from its last epoch")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_run_train)


def model_with_revision(args) -> str | None:
    """--model pinned to --revision (ORG/NAME@REVISION)."""
    revision = getattr(args, "revision", None)
    if revision is None:
        return args.model
    if not args.model:
        raise ValueError("--revision pins the Hub model given with --model; give --model ORG/NAME too")
    from vpkit.hub import with_revision

    return with_revision(args.model, revision)


def train_overrides(args) -> dict:
    """The config overrides a `vpkit train` command line asks for (None = keep the config's value)."""
    return {
        "model": {"name_or_path": model_with_revision(args), "dtype": args.dtype},
        "dataset": {"root": args.data_root, "split": args.split_scheme, "preprocess": args.preprocess},
        "train": {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "eval_batch_size": args.eval_batch_size,
            "lr": args.lr,
            "patience": args.patience,
            "grad_accum": args.grad_accum,
            "max_grad_norm": args.max_grad_norm,
            "seed": args.seed,
            "amp": args.amp,
            "checkpointing": args.checkpointing,
            "compile": False if args.compile == "off" else args.compile,
            "compile_cache_dir": args.compile_cache_dir,
            "device": args.device,
            "num_workers": args.num_workers,
            "cache_dir": args.cache_dir,
            "limit": args.limit,
            "deterministic": args.deterministic,
        },
    }


def _run_train(args) -> int:
    from vpkit.config import load_config
    from vpkit.train import train

    config = load_config(args.experiment).with_overrides(train_overrides(args), source="command line")
    if args.no_grad_clip:
        config.train.max_grad_norm = None  # with_overrides reads None as "keep the config's value"
    out = Path(args.out) if args.out else Path("runs") / config.name
    test = train(config, out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    print(f"run folder: {out}")
    print(json.dumps(_rounded(test), indent=2))
    return 0


# ----------------------------------------------------------------------------- runs


def _add_runs(commands) -> None:
    parser = commands.add_parser(
        "runs", help="a table of the runs under a folder (status, best epoch, test metrics)"
    )
    parser.add_argument("root", nargs="?", default="runs")
    parser.add_argument("--out", help="also write the table to this CSV file")
    parser.add_argument(
        "--provenance",
        action="store_true",
        help="what made each run instead of its results: vpkit, torch, CUDA, host, device, model and data source, "
        "start and end (from its provenance.json)",
    )
    parser.set_defaults(handler=_run_runs)


def _run_runs(args) -> int:
    from vpkit.atomic import write_csv_atomic
    from vpkit.provenance import provenance_table
    from vpkit.runs import collect_runs

    table = collect_runs(args.root)
    if table.empty:
        print(f"no run folders under {args.root}")
        return 0
    if args.provenance:
        table = provenance_table(table)
    shown = table.drop(columns=["run", "problem"], errors="ignore")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    unusable = table[table["problem"].notna()] if "problem" in table else pd.DataFrame(columns=["status", "problem"])
    for status, problem in zip(unusable["status"], unusable["problem"]):  # damaged, or of another format
        print(f"{status}: {problem}")
    if args.out:
        write_csv_atomic(args.out, table)
    return 0


# ----------------------------------------------------------------------------- eval


def _add_model_options(parser) -> None:
    parser.add_argument("--model", help="tiny, tiny-random, a model folder or a Hub id ORG/NAME (default: the "
                        "run's model)")
    parser.add_argument("--revision", help="the Hub revision (branch, tag or commit) of --model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"))
    parser.add_argument("--amp", choices=("none", "fp16", "bf16"), default="none")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_eval(commands) -> None:
    parser = commands.add_parser("eval", help="score a dataset split with a trained prompt (or --zero-shot)")
    parser.add_argument("source", nargs="?", help="a run folder or a prompt .safetensors checkpoint")
    parser.add_argument("--zero-shot", action="store_true", help="no prompt: the frozen model alone")
    parser.add_argument("--dataset", choices=DATASETS, help="default: the run's dataset")
    parser.add_argument("--data-root", help="default: the run's dataset root")
    parser.add_argument(
        "--subset",
        default="test",
        choices=(*SPLIT_NAMES, "all"),
        help="which images: one split of --split-scheme, or all (the whole dataset, e.g. for cross-dataset tests)",
    )
    parser.add_argument("--split-scheme", choices=SPLIT_KINDS, help="default: the run's")
    parser.add_argument("--preprocess", choices=PREPROCESS_METHODS)
    parser.add_argument("--limit", type=int, help="score at most N images")
    parser.add_argument("--cache-dir")
    parser.add_argument("--out", help="write metrics.json and predictions.csv into this folder")
    _add_model_options(parser)
    parser.set_defaults(handler=_run_eval)


def _run_eval(args) -> int:
    from vpkit import provenance
    from vpkit.device import resolve_device
    from vpkit.evaluate import evaluate_on_dataset, load_scorer_for, load_trained_prompt, scorer_model

    if args.zero_shot == (args.source is not None):
        raise ValueError("give a run folder or checkpoint, or --zero-shot (not both)")
    check_writable(args.out and str(Path(args.out) / "metrics.json"))
    device = resolve_device(args.device)
    trained = None if args.zero_shot else load_trained_prompt(args.source, device)
    run = trained.config if trained is not None else None
    dataset = args.dataset or (run.dataset.name if run else None)
    root = args.data_root or (run.dataset.root if run and dataset == run.dataset.name else None)
    if dataset is None or root is None:
        raise ValueError("say which data to score: --dataset and --data-root")
    model = model_with_revision(args)
    scorer = load_scorer_for(trained, device, model=model, dtype=args.dtype)
    session = provenance.session(device, provenance.scorer_source(scorer, scorer_model(trained, model)),
                                 provenance.data_source(root, dataset))
    same_data = run is not None and dataset == run.dataset.name
    metrics, predictions = evaluate_on_dataset(
        scorer,
        trained.prompter if trained else None,
        dataset,
        root,
        args.subset,
        split_scheme=args.split_scheme or (run.dataset.split if same_data else "paper"),
        layout=run.dataset.layout if same_data else "auto",
        method=args.preprocess or _recorded_preprocess(trained),
        batch_size=args.batch_size,
        device=device,
        amp=args.amp,
        limit=args.limit,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    metrics["source"] = "zero-shot" if trained is None else str(trained.source)
    print(json.dumps(_rounded(metrics), indent=2))
    if args.out:
        from vpkit.atomic import write_csv_atomic, write_json_atomic

        write_json_atomic(Path(args.out) / "metrics.json", metrics)
        write_csv_atomic(Path(args.out) / "predictions.csv", predictions)
        session["prompt"] = metrics["source"]
        provenance.write_record(args.out, "evaluation", [provenance.finish(session)])
    return 0


def _recorded_preprocess(trained) -> str:
    if trained is None:
        return "resize_crop"
    if trained.config is not None:
        return trained.config.dataset.preprocess
    return trained.metadata.get("preprocess", "resize_crop")


# ----------------------------------------------------------------------------- score


def _add_score(commands) -> None:
    parser = commands.add_parser("score", help="score your own image files with a trained prompt")
    parser.add_argument("source", help="a run folder or a prompt .safetensors checkpoint")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--out", help="write path,score to this CSV file")
    parser.add_argument("--preprocess", choices=PREPROCESS_METHODS)
    _add_model_options(parser)
    parser.set_defaults(handler=_run_score, batch_size=8)


def image_files(paths: list[str]) -> tuple[list[Path], int]:
    """The files to score: each given path as it is (a missing one is reported when scoring), folders searched
    recursively for image files (by suffix, sorted; symbolic links followed). Also returns how many other files
    the folders held."""
    files, others = [], 0
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        inside = sorted(files_below(path))
        found = [p for p in inside if p.suffix.lower() in IMAGE_SUFFIXES]
        files.extend(found or [path])  # a folder without images is reported with the files not scored
        others += len(inside) - len(found)
    return files, others


def files_below(folder: Path) -> list[Path]:
    """Every file in `folder` and below, through symbolic links to folders too (a data set's images/ is often
    one); each real folder is read once, so a link back up does not loop."""
    seen, found = set(), []
    for top, folders, names in os.walk(folder, followlinks=True):
        status = os.stat(top)
        if (status.st_dev, status.st_ino) in seen:
            folders[:] = []  # reached again through a link: already read
            continue
        seen.add((status.st_dev, status.st_ino))
        found.extend(path for path in (Path(top) / name for name in names) if path.is_file())
    return found


def printable(name: str) -> str:
    """A file name for the terminal: bytes that are not UTF-8 (kept as surrogates by Python) shown as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_writable(out: str | None) -> None:
    """Fail before the work, not after it, when --out cannot be written."""
    if out is None:
        return
    folder = Path(out).parent
    blocking = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(blocking))
    folder.mkdir(parents=True, exist_ok=True)
    if Path(out).is_dir():
        raise OSError(errno.EISDIR, "is a folder", str(out))
    if not os.access(folder, os.W_OK):
        raise OSError(errno.EACCES, "the folder is not writable", str(out))


def write_scores_csv(path: str | Path, scores: pd.DataFrame) -> None:
    """The scores as CSV; file names that are not UTF-8 are written as their original bytes (surrogateescape),
    so every path in the file names the file on disk."""
    from vpkit.atomic import atomic_replace

    atomic_replace(
        path,
        lambda tmp: scores.to_csv(tmp, index=False, encoding="utf-8", errors="surrogateescape"),
    )


def scored_image_notes(paths) -> list[str]:
    """What the user should know about images that were scored: an EXIF rotation vpkit ignores (they were scored
    as stored), a size over Pillow's warning limit."""
    import dataclasses

    from vpkit.data.images import describe_notes, image_notes, large_image_warnings_told

    with large_image_warnings_told():
        notes = [note for path in paths for note in image_notes(path)]
    return describe_notes([dataclasses.replace(note, path=printable(note.path)) for note in notes])


def _run_score(args) -> int:
    from vpkit.device import resolve_device
    from vpkit.evaluate import check_prompt_fits, load_scorer_for, load_trained_prompt, score_image_files

    check_writable(args.out)
    files, others = image_files(args.images)
    device = resolve_device(args.device)
    trained = load_trained_prompt(args.source, device)
    scorer = load_scorer_for(trained, device, model=model_with_revision(args), dtype=args.dtype)
    check_prompt_fits(trained.prompter, scorer, trained.source)
    scores = score_image_files(
        scorer,
        trained.prompter,
        files,
        device,
        amp=args.amp,
        batch_size=args.batch_size,
        method=args.preprocess or _recorded_preprocess(trained),
        progress=not args.quiet,
    )
    failed = scores[scores["error"] != ""]
    shown = scores[scores["error"] == ""][["path", "score"]].assign(path=lambda f: f["path"].map(printable))
    if len(shown):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for line in scored_image_notes(scores.loc[scores["error"] == "", "path"]):
        print(f"note: {line}", file=sys.stderr)
    if others:
        print(f"({others} other file(s) in the folders are not images by their suffix and were not scored)")
    if args.out:
        write_scores_csv(args.out, scores)
        print(f"wrote {args.out}" + (" (column 'error' says why a file has no score)" if len(failed) else ""))
    if len(failed):
        print(f"could not score {len(failed)} of {len(scores)} file(s):", file=sys.stderr)
        for path, error in zip(failed["path"], failed["error"]):
            print(f"  {printable(path)}: {error}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- import-prompt


def _add_import_prompt(commands) -> None:
    parser = commands.add_parser("import-prompt", help="turn the paper's released prompts into a run folder")
    parser.add_argument(
        "checkpoint",
        nargs="?",
        help="the paper's experiment folder (SGD_mplug2_exp_NN_.../, its best checkpoint is taken), "
        "one checkpoint-NNNN folder, or a visual_prompt.pth (or --released)",
    )
    parser.add_argument(
        "--released",
        nargs="?",
        const="",
        metavar="REPO_ID",
        help="fetch the paper's released-prompt archive from the Hub (default repository: "
        "yahya007/mplug2-vp-for-nriqa) and import every experiment in it as OUT/<experiment name>",
    )
    parser.add_argument("--revision", help="with --released: the Hub revision (branch, tag or commit) to fetch")
    parser.add_argument(
        "--experiment",
        type=int,
        help="the paper experiment it comes from (sets the rest; default: read from the folder name)",
    )
    parser.add_argument(
        "--all-checkpoints",
        action="store_true",
        help="also import every checkpoint-NNNN as epoch-NN.safetensors (an experiment folder)",
    )
    parser.add_argument("--type", choices=PROMPT_TYPES)
    parser.add_argument("--size", type=int, help="prompt size in pixels at --image-size")
    parser.add_argument("--mode", choices=PROMPT_MODES)
    parser.add_argument("--delta", type=float)
    parser.add_argument("--is-center", action="store_true", default=None, help="centre patch (fixed_patch)")
    parser.add_argument("--image-size", type=int, help="input size the prompt was trained at (default 448)")
    parser.add_argument(
        "--dataset", choices=DATASETS, help="the dataset it was trained on"
    )
    parser.add_argument("--model", help="the model it belongs to (default: the paper's mPLUG-Owl2 folder)")
    parser.add_argument("--out", required=True, help="the run folder to create")
    parser.add_argument("--overwrite", action="store_true")
    parser.set_defaults(handler=_run_import_prompt)


def _run_import_prompt(args) -> int:
    from vpkit.config import ExperimentConfig, paper_config
    from vpkit.paper import find_released_prompts, import_prompt, infer_paper_experiment

    if args.released is not None:
        return _import_released(args)
    if args.checkpoint is None:
        raise ValueError("give the checkpoint to import (an experiment folder, a checkpoint-NNNN folder or a "
                         "visual_prompt.pth), or --released to fetch the paper's released prompts")
    experiment = _import_experiment(args, infer_paper_experiment(args.checkpoint))
    base = paper_config(experiment) if experiment else ExperimentConfig(name=Path(args.out).name)
    config = base.with_overrides(
        {
            "model": {"name_or_path": args.model},
            "dataset": {"name": args.dataset},
            "prompt": {
                "type": args.type,
                "size": args.size,
                "mode": args.mode,
                "delta": args.delta,
                "is_center": args.is_center,
                "image_size": args.image_size,
            },
        },
        source="command line",
    )
    released = find_released_prompts(args.checkpoint)
    out = import_prompt(released, args.out, config, overwrite=args.overwrite, all_checkpoints=args.all_checkpoints)
    epoch = f", epoch {released.best.epoch}" if released.best.epoch is not None else ""
    print(f"best prompt: {released.best.path}{epoch} ({released.chosen_by})")
    if args.all_checkpoints:
        print(f"imported {len(released.checkpoints)} checkpoints as epoch-NN.safetensors")
    print(
        f"imported as {config.prompt.type} ({config.prompt.size or 'full'} px at "
        f"{config.prompt.image_size}, {config.prompt.mode}) into {out}"
    )
    return 0


def _import_released(args) -> int:
    """`import-prompt --released [REPO_ID] --out DIR`: every experiment of the paper's released archive."""
    from vpkit.config import paper_config
    from vpkit.paper import PAPER_MODEL, RELEASED_REPO, import_released

    given = [name for name, value in (("CHECKPOINT", args.checkpoint), ("--experiment", args.experiment),
                                      ("--all-checkpoints", args.all_checkpoints or None), ("--type", args.type))
             if value is not None]
    if given:
        raise ValueError(f"--released imports the whole archive, each experiment as the paper ran it; drop "
                         f"{', '.join(given)}")
    repo_id = args.released or RELEASED_REPO
    # the runs name the model they belong to: the paper's, on the Hub, unless --model says otherwise
    overrides = {"model": {"name_or_path": args.model or PAPER_MODEL}, "dataset": {"name": args.dataset}}
    result = import_released(
        args.out, repo_id, revision=args.revision, overwrite=args.overwrite,
        config_for=lambda number: paper_config(number).with_overrides(overrides, source="command line"),
    )
    commit = f" at {result.source.commit}" if result.source.commit else ""
    print(f"fetched {result.source.path.name} from {repo_id}{commit} (sha256 {result.source.sha256 or 'n/a'})")
    for number, run_dir in sorted(result.imported.items()):
        print(f"  experiment {number:2d} -> {run_dir}")
    for number, run_dir in sorted(result.kept.items()):
        print(f"  experiment {number:2d}: {run_dir} already holds a run, kept (--overwrite replaces it)")
    for folder in result.unplaced:
        print(f"  {folder}: names no paper experiment (or a second copy of one); not imported")
    print(f"imported {len(result.imported)}, kept {len(result.kept)} into {args.out}")
    if result.missing:
        print(f"the archive lacks {len(result.missing)} of the paper's experiments: "
              f"{', '.join(str(n) for n in result.missing)}")
    return 0


def _import_experiment(args, inferred: tuple[int, str] | None) -> int | None:
    """The paper experiment an import belongs to: --experiment, else the folder name's (said so), else none."""
    if args.experiment is not None:
        if inferred and inferred[0] != args.experiment:
            print(f"note: --experiment {args.experiment} used, although the folder {inferred[1]} says {inferred[0]}")
        return args.experiment
    if inferred and args.type is None:
        print(f"experiment {inferred[0]}, read from the folder name {inferred[1]} (--experiment overrides it)")
        return inferred[0]
    if args.type is None:
        raise ValueError(
            "say what the prompt is: --experiment N, or --type (and --size, --mode); the path names no paper "
            "experiment folder (SGD_mplug2_exp_NN_...)"
        )
    return None


# ----------------------------------------------------------------------------- data, reproduce


def _add_doctor(commands) -> None:
    parser = commands.add_parser(
        "doctor", help="check this machine: versions, caches, and every training path on the tiny model"
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default: cuda when available)")
    parser.add_argument("--quick", action="store_true", help="skip the torch.compile paths (seconds, not a minute)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    parser.set_defaults(handler=_run_doctor)


def _run_doctor(args) -> int:
    from vpkit.doctor import run_doctor  # torch and the training code load only for this command

    return run_doctor(args)


def _register(commands, module_name: str) -> None:
    """Let `module_name` add the command it owns (its options and handler live there)."""
    import importlib

    importlib.import_module(module_name).register(commands)


def _add_data(commands) -> None:
    _register(commands, "vpkit.data.cli")  # `vpkit data check|synth`, owned by vpkit.data


def _add_reproduce(commands) -> None:
    _register(commands, "vpkit.reproduce")  # `vpkit reproduce`: papermill over the notebooks, profiles demo|paper


def _rounded(metrics: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}


if __name__ == "__main__":
    sys.exit(main())
