"""The paper's own artifacts in one place: its pinned split files, its model, its released prompts (the Hub
archive and the import of its Hugging Face Trainer experiment folders as vpkit run folders). Its published
numbers are vpkit/assets/paper_results.csv (vpkit.tables reads them).

Everything fetched goes through vpkit.hub.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vpkit import provenance
from vpkit.archives import unpack
from vpkit.hub import Fetched, fetch_file, fetch_url
from vpkit.runs import (
    BEST_CHECKPOINT,
    RunFolderError,
    RunState,
    clear_run_dir,
    copy_checkpoint,
    epoch_checkpoint_name,
    lock_run_dir,
    prompt_checkpoint_metadata,
    run_status,
    save_prompt_checkpoint,
    write_config,
    write_metrics,
    write_state,
)

# The model every experiment of the paper uses (a local folder of the same name wins, vpkit.hub.is_hub_id).
PAPER_MODEL = "MAGAer13/mplug-owl2-llama2-7b"

# ----------------------------------------------------------------------------- the split files

# The paper's repository at the commit vpkit pins; VPKIT_PAPER_FILES_URL replaces the URL prefix (a mirror, a
# local server): the files are then read from $VPKIT_PAPER_FILES_URL/data/split_kadid10k.csv and so on.
PAPER_REPOSITORY = "yahya-ben/mplug2-vp-for-nriqa"
PAPER_COMMIT = "4c56315a76c4b0c40cc3af725bbe8ffea64d40b0"
PAPER_FILES_URL = f"https://raw.githubusercontent.com/{PAPER_REPOSITORY}/{PAPER_COMMIT}"
PAPER_FILES_URL_VARIABLE = "VPKIT_PAPER_FILES_URL"


@dataclass(frozen=True)
class PinnedFile:
    path: str  # inside the paper's repository
    size: int
    sha256: str

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


SPLIT_FILES = {
    "kadid": PinnedFile("data/split_kadid10k.csv", 386_911,
                        "64f145f79a17111fa22fafe0a98db85dbea6141fdfbe0348fd68dbe963c4116b"),
    "agiqa": PinnedFile("data/split_agiqa3k.csv", 458_686,
                        "4c20ee2d3212e5ed596311b6dfb903f2213c660008ee4e3813a7c8d96761f89a"),
}


def paper_files_url() -> str:
    return (os.environ.get(PAPER_FILES_URL_VARIABLE) or PAPER_FILES_URL).rstrip("/")


def fetch_split_file(dataset: str, folder: str | Path) -> Fetched:
    """The paper's split file of `dataset` (kadid, agiqa) in `folder`, downloaded and checked against its pin."""
    pinned = SPLIT_FILES[dataset]
    return fetch_url(f"{paper_files_url()}/{pinned.path}", Path(folder) / pinned.name, sha256=pinned.sha256,
                     size=pinned.size)


# ----------------------------------------------------------------------------- the released prompts

RELEASED_REPO = "yahya007/mplug2-vp-for-nriqa"  # a Hub model repository
RELEASED_ARCHIVE = "visual_prompt_ckpt_trained_on_mplug2.zip"
UNPACK_PREFIX = ".released-"  # the temporary folder an archive is unpacked into, inside the output folder


@dataclass
class ReleasedImport:
    """What `import_released` did: run folders by experiment number, experiments the archive lacks, experiment
    folders it could not place, and the archive's source."""

    source: Fetched
    imported: dict[int, Path] = field(default_factory=dict)
    kept: dict[int, Path] = field(default_factory=dict)  # already there from an earlier import
    missing: list[int] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)


def import_released(out_dir: str | Path, repo_id: str = RELEASED_REPO, *, revision: str | None = None,
                    config_for: Callable[[int], object] | None = None, overwrite: bool = False,
                    archive: str = RELEASED_ARCHIVE, only: Iterable[int] | None = None) -> ReleasedImport:
    """Fetch the paper's released-prompt archive from the Hub and import every experiment folder in it (found at
    any depth) as a run folder OUT_DIR/<experiment name>, the name vpkit gives that experiment's runs.

    `config_for(number)` gives each experiment's config (default: vpkit.config.paper_config); `only` limits the
    import to those experiment numbers. A run folder that
    already holds a run is kept unless `overwrite`. The archive is unpacked into a temporary folder inside
    OUT_DIR and removed after."""
    from vpkit.config import PAPER_EXPERIMENTS, paper_config

    config_for = config_for or paper_config
    only = None if only is None else set(only)
    out_dir = Path(out_dir)
    source = fetch_file(repo_id, archive, revision=revision, free_space_for=out_dir)
    result = ReleasedImport(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=UNPACK_PREFIX, dir=out_dir) as unpacked:
        unpack(source.path, Path(unpacked), f"{repo_id}/{archive}")
        found: dict[int, Path] = {}
        for folder in experiment_folders(Path(unpacked)):
            inferred = infer_paper_experiment(folder)
            if inferred is None or inferred[0] in found:
                result.unplaced.append(str(folder.relative_to(unpacked)))
                continue
            found[inferred[0]] = folder
        if not found:
            raise RunFolderError(f"{source.path} ({repo_id}/{archive}): holds no experiment folder "
                                 "(SGD_mplug2_exp_NN_.../checkpoint-NNNN/visual_prompt.pth); is it the paper's archive?")
        for number in sorted(found):
            if only is not None and number not in only:
                continue
            config = config_for(number)
            run_dir = out_dir / config.name
            if run_status(run_dir) != "new" and not overwrite:
                result.kept[number] = run_dir
                continue
            inside = found[number].relative_to(unpacked).as_posix()
            origin = f"hf://{repo_id}@{source.commit or revision or 'main'}/{archive}!/{inside}"
            import_prompt(found[number], run_dir, config, overwrite=overwrite, origin=origin)
            result.imported[number] = run_dir
    result.missing = [exp.number for exp in PAPER_EXPERIMENTS if exp.number not in found]
    return result


def experiment_folders(root: Path) -> list[Path]:
    """Every folder under `root` (at any depth) that holds checkpoint-NNNN folders with a prompt: the paper's
    Trainer output folders."""
    found = []
    for path in sorted(root.rglob(PAPER_PROMPT_FILE)):
        checkpoint = path.parent
        if _CHECKPOINT_DIR.fullmatch(checkpoint.name) and checkpoint.parent not in found:
            found.append(checkpoint.parent)
    return found


def import_prompt(
    checkpoint: str | Path | ReleasedPrompts,
    out_dir: str | Path,
    config,
    overwrite: bool = False,
    all_checkpoints: bool = False,
    origin: str | None = None,
    model_source: dict | None = None,
) -> Path:
    """Turn a released prompt into a run-like folder that `vpkit eval` and `vpkit score` use.

    `checkpoint` is a `visual_prompt.pth`, one Hugging Face Trainer `checkpoint-NNNN` folder, or the paper's
    experiment folder of them (the best is the one the paper's tester would pick), or what
    `find_released_prompts` already found in one of those.
    `config` (an ExperimentConfig) says what the prompt is (prompt section, at prompt.image_size px)
    and which model and data it belongs to. The tensors are checked against that prompt shape.
    `all_checkpoints` also writes every checkpoint as epoch-NN.safetensors (NN from its trainer_state.json).
    `origin` is recorded as where each checkpoint came from (default: its absolute path); provenance.json records
    the import with those origins and the model the prompt belongs to (`model_source`, a provenance.model_source;
    default: that of config.model).
    """
    from vpkit.prompters import load_prompt_state, prompter_from_config

    released = checkpoint if isinstance(checkpoint, ReleasedPrompts) else find_released_prompts(checkpoint)
    chosen = released.checkpoints if all_checkpoints else (released.best,)
    unknown = [str(prompt.path) for prompt in chosen if all_checkpoints and prompt.epoch is None]
    if unknown:
        raise RunFolderError(
            f"{unknown[0]}: its epoch is unknown (no {TRAINER_STATE_FILE} beside it); import without "
            "--all-checkpoints"
        )
    out_dir = Path(out_dir)
    prompters = {}
    for prompt in chosen:  # every file is checked before anything is written
        prompter = prompter_from_config(config.prompt)
        prompters[prompt.path] = load_prompt_state(prompter, prompt.path)  # raises with the real shape
    with lock_run_dir(out_dir):
        if run_status(out_dir) != "new":
            if not overwrite:
                raise RunFolderError(f"{out_dir}: not empty; pass --overwrite to replace the run files there")
            clear_run_dir(out_dir)
        entry = provenance.session(
            None, model_source or provenance.model_source(config.model.name_or_path),
            {"imported": [_origin_of(prompt.path, checkpoint, origin) for prompt in chosen],
             "chosen_by": released.chosen_by},
        )
        provenance.write_record(out_dir, "import", [entry])  # first: the folder says what it is from the start
        write_config(out_dir, config)
        for prompt in chosen:
            metadata = prompt_checkpoint_metadata(
                config, prompters[prompt.path], epoch=prompt.epoch or 0, metrics={},
                imported_from=_origin_of(prompt.path, checkpoint, origin),
            )
            target = out_dir / (epoch_checkpoint_name(prompt.epoch) if all_checkpoints else BEST_CHECKPOINT)
            save_prompt_checkpoint(target, prompters[prompt.path].state_dict(), metadata)
        if all_checkpoints:
            copy_checkpoint(out_dir / epoch_checkpoint_name(released.best.epoch), out_dir / BEST_CHECKPOINT)
        if released.history:
            write_metrics(out_dir, list(released.history))
        epochs = [prompt.epoch or 0 for prompt in chosen]
        state = RunState(
            config_hash=config.hash(), epoch=max(epochs), best_epoch=released.best.epoch or 0, finished=True
        )
        write_state(out_dir, state)
        provenance.write_record(out_dir, "import", [provenance.finish(entry)])
    return out_dir


# The paper's released prompts are Hugging Face Trainer output folders, one per experiment:
#   SGD_mplug2_exp_NN_<dataset>_<shape>_<mode>/checkpoint-<step>/{visual_prompt.pth, trainer_state.json, ...}
# one checkpoint per epoch; the paper's README: the best is named by `best_model_checkpoint` in the final
# checkpoint's trainer_state.json, and its src/tester.py loads <output_dir>/<that checkpoint>/visual_prompt.pth.
PAPER_PROMPT_FILE = "visual_prompt.pth"
TRAINER_STATE_FILE = "trainer_state.json"
_CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)")
_PAPER_EXPERIMENT_DIR = re.compile(r"(?:^|_)exp_(\d{1,2})_")


@dataclass(frozen=True)
class ReleasedPrompt:
    path: Path  # the visual_prompt.pth
    epoch: int | None  # from the checkpoint's trainer_state.json; None when it has none


@dataclass(frozen=True)
class ReleasedPrompts:
    best: ReleasedPrompt
    checkpoints: tuple[ReleasedPrompt, ...]  # every checkpoint found, in training order
    chosen_by: str  # how `best` was picked, in words
    history: tuple[dict, ...] = ()  # per-epoch validation metrics from the last trainer_state.json


def find_released_prompts(path: str | Path) -> ReleasedPrompts:
    """The prompt file(s) of a .pth, a checkpoint-NNNN folder or an experiment folder of them.

    For an experiment folder the best checkpoint is the one `best_model_checkpoint` names in the trainer_state.json
    of the last checkpoint (highest step), as the paper's tester picks it.
    """
    path = Path(path)
    if path.is_file() or (path.is_dir() and (path / PAPER_PROMPT_FILE).is_file()):
        prompt = _released_prompt(path if path.is_file() else path / PAPER_PROMPT_FILE)
        return ReleasedPrompts(prompt, (prompt,), "the checkpoint given")
    if not path.is_dir():
        raise RunFolderError(f"{path}: no such file or folder")
    steps = sorted(
        (int(match.group(1)), child)
        for child in path.iterdir()
        if child.is_dir() and (match := _CHECKPOINT_DIR.fullmatch(child.name))
    )
    if not steps:
        raise RunFolderError(
            f"{path}: holds neither {PAPER_PROMPT_FILE} nor checkpoint-NNNN folders; give the paper's experiment "
            f"folder (SGD_mplug2_exp_NN_...), one of its checkpoint-NNNN folders or a {PAPER_PROMPT_FILE}"
        )
    last = steps[-1][1]
    best_name = _best_checkpoint_name(last / TRAINER_STATE_FILE)
    history = _validation_history(_read_trainer_state(last / TRAINER_STATE_FILE))
    best_file = path / best_name / PAPER_PROMPT_FILE
    if not best_file.is_file():
        raise RunFolderError(
            f"{last / TRAINER_STATE_FILE}: best_model_checkpoint names {best_name}, but {best_file} is missing; "
            "give the checkpoint folder to import instead"
        )
    checkpoints = tuple(
        _released_prompt(folder / PAPER_PROMPT_FILE) for _, folder in steps if (folder / PAPER_PROMPT_FILE).is_file()
    )
    return ReleasedPrompts(
        _released_prompt(best_file), checkpoints, f"best_model_checkpoint in {last.name}/{TRAINER_STATE_FILE}",
        history,
    )


def infer_paper_experiment(path: str | Path) -> tuple[int, str] | None:
    """(experiment number, the folder name it was read from) when `path` or one of its two parents is named like
    the paper's output folders (SGD_mplug2_exp_04_kadid_padding_30px_add); None otherwise."""
    from vpkit.config import PAPER_EXPERIMENTS

    path = Path(path).resolve()
    for part in [path, *path.parents][:3]:
        for exp in PAPER_EXPERIMENTS:
            if part.name == exp.paper_name:
                return exp.number, part.name
        match = _PAPER_EXPERIMENT_DIR.search(part.name)
        if match and 1 <= int(match.group(1)) <= len(PAPER_EXPERIMENTS):
            return int(match.group(1)), part.name
    return None


def _released_prompt(pth: Path) -> ReleasedPrompt:
    state_file = pth.parent / TRAINER_STATE_FILE
    epoch = _read_trainer_state(state_file).get("epoch") if state_file.is_file() else None
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, (int, float))):
        raise RunFolderError(f"{state_file}: epoch = {epoch!r} is not a number")
    return ReleasedPrompt(pth, None if epoch is None else round(epoch))  # the Trainer writes epochs as 2.0


def _validation_history(state: dict) -> tuple[dict, ...]:
    """The per-epoch validation rows of a trainer_state.json's log_history, in vpkit's metric names (the paper's
    compute_metrics logs eval_srocc, eval_plcc and eval_metric = their mean, vpkit's selection)."""
    rows, best = [], float("-inf")
    for entry in state.get("log_history") or []:
        if isinstance(entry, dict) and isinstance(entry.get("epoch"), (int, float)) and "eval_metric" in entry:
            selection = entry["eval_metric"]
            improved = isinstance(selection, (int, float)) and selection > best  # the Trainer's np.greater
            best = selection if improved else best
            rows.append({
                "epoch": round(entry["epoch"]),
                "val_srcc": entry.get("eval_srocc"),
                "val_plcc": entry.get("eval_plcc"),
                "val_selection": selection,
                "best": improved,
            })
    return tuple(rows)


def _best_checkpoint_name(state_file: Path) -> str:
    if not state_file.is_file():
        raise RunFolderError(
            f"{state_file}: missing; the last checkpoint's {TRAINER_STATE_FILE} names the best one "
            "(best_model_checkpoint); give the checkpoint-NNNN folder to import instead"
        )
    best = _read_trainer_state(state_file).get("best_model_checkpoint")
    if not isinstance(best, str) or not best.strip():
        raise RunFolderError(
            f"{state_file}: has no best_model_checkpoint (a run without load_best_model_at_end); "
            "give the checkpoint-NNNN folder to import instead"
        )
    return best.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]  # a path as the trainer saw it: keep the name


def _read_trainer_state(state_file: Path) -> dict:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{state_file}: not readable as JSON ({error})") from None
    if not isinstance(state, dict):
        raise RunFolderError(f"{state_file}: not a JSON object")
    return state


def _origin_of(prompt_file: Path, given, origin: str | None) -> str:
    """Where an imported prompt file came from: `origin` (naming the folder given) plus the file's place inside
    that folder, else the file's absolute path."""
    if origin is None:
        return str(prompt_file.resolve())
    base = None if isinstance(given, ReleasedPrompts) else Path(given)
    if base is not None and base.is_dir() and prompt_file.is_relative_to(base):
        return f"{origin}/{prompt_file.relative_to(base).as_posix()}"
    return origin
