"""Reproducing the paper: the notebooks' settings, which experiments run, and `vpkit reproduce`.

The notebooks (vpkit/notebooks, `notebooks/` in a clone) only call this module, vpkit.tables and vpkit.plots. Each starts with a
papermill `parameters` cell (model, data_root, experiments, mul_residual, epochs, batch_size, lr, limit,
device, out_dir, figures_dir, seed) and passes it to `notebook_settings`. `vpkit reproduce --profile
demo|released|paper` runs them in order with the parameters of vpkit/configs/profiles/<profile>.yaml (the released
profile first imports and tests the paper's released prompts, `released_runs`, so nothing is trained), into

    OUT/runs/<experiment>/   one run folder per experiment (vpkit.runs), and one per mul_residual variant
    OUT/tables/*.csv         zero-shot scores and the paper's tables
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
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vpkit.data.specs import DATASETS as DATASET_ORDER
from vpkit.resources import package_path, project_path

NOTEBOOKS_DIR = package_path("notebooks")
PROFILES_DIR = package_path("configs", "profiles")
NOTEBOOKS = ("00_data", "01_zero_shot", "02_train_padding", "03_train_patches", "04_train_full", "05_tables",
             "06_prompt_gallery")
KERNEL_NAME = "python3"
# The kernel's start-up warning about unencrypted local TCP says nothing about the notebook; errors still show.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]

DEMO_DATA = "demo"  # data_root value meaning "the generated synthetic set, made if absent"
DEMO_DATA_FOLDER = "demo_data"  # where it is made, inside out_dir
FAMILIES = ("padding", "fixed_patch", "full")  # the three training notebooks, by prompt type

# name -> (allowed types, may be null). The order is the notebooks' parameters cell.
PARAMETERS: dict[str, tuple[tuple[type, ...], bool]] = {
    "model": ((str,), False),
    "data_root": ((str,), False),
    "experiments": ((list,), True),
    "mul_residual": ((list,), False),
    "epochs": ((int,), True),
    "batch_size": ((int,), True),
    "lr": ((int, float), True),
    "limit": ((int,), True),
    "device": ((str,), False),
    "out_dir": ((str,), False),
    "figures_dir": ((str,), True),
    "seed": ((int,), False),
    "extra_seeds": ((dict,), False),
}
# Parameters that come from where the reproduction writes, not from a profile.
OUTPUT_PARAMETERS = ("out_dir", "figures_dir")
# slurm: read by vpkit.sweep; released: a Hub repository of the paper's released prompts, imported and tested
# (released_runs) instead of trained
PROFILE_KEYS = ("description", "required", "parameters", "slurm", "released")
MUL_RESIDUAL = "mul_residual"  # the prompt mode of vpkit's fix of the paper's mul


class ReproduceError(RuntimeError):
    """Bad parameters or profile, or a notebook that failed; the message says where and what to do."""

    def _render_traceback_(self) -> list[str]:
        """How IPython (a notebook) shows this error: the one-line message, which names the parameter to change,
        without vpkit's internal traceback."""
        return [f"{type(self).__name__}: {self}"]


class RunSettingsError(ReproduceError):
    """A run folder under out_dir holds the experiment trained with other settings; the message names the
    notebook parameters to change (vpkit reproduce adds its options of the same names)."""


# Config fields a notebook parameter sets (experiment_config), so a mismatch can name the parameter to change.
PARAMETER_OF_FIELD = {("model", "name_or_path"): "model", ("train", "epochs"): "epochs",
                      ("train", "batch_size"): "batch_size", ("train", "lr"): "lr", ("train", "limit"): "limit",
                      ("train", "seed"): "seed"}
# Parameters that are config settings, checked by the config's rules (one home for bounds and devices).
CONFIG_FIELD_OF_PARAMETER = {**{parameter: field for field, parameter in PARAMETER_OF_FIELD.items()},
                             "device": ("train", "device")}


# ----------------------------------------------------------------------------- parameters


def check_parameters(values: dict, source: str) -> dict:
    """Validate notebook parameters (any subset of PARAMETERS); returns them with lr as float."""
    unknown = sorted(set(values) - set(PARAMETERS))
    if unknown:
        raise ReproduceError(f"{source}: unknown parameter(s) {', '.join(unknown)}; allowed: {', '.join(PARAMETERS)}")
    checked = {}
    for name, value in values.items():
        types, nullable = PARAMETERS[name]
        where = f"{source}: {name}"
        if value is None:
            if not nullable:
                raise ReproduceError(f"{where} must be given (it cannot be null)")
            checked[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types) + (" or null" if nullable else "")
            raise ReproduceError(f"{where} = {value!r} must be {wanted}")
        checked[name] = _check_value(where, name, value)
    return checked


def _check_value(where: str, name: str, value):
    from vpkit.config import PAPER_EXPERIMENTS, ConfigError, check_field

    field = CONFIG_FIELD_OF_PARAMETER.get(name)
    if field is not None:  # the config's own rules (type, bounds, finite numbers, devices), looked up
        try:
            return check_field(where, *field, value)
        except ConfigError as error:
            raise ReproduceError(str(error)) from None
    if name == "experiments":
        numbers = range(1, len(PAPER_EXPERIMENTS) + 1)
        bad = [n for n in value if isinstance(n, bool) or not isinstance(n, int) or n not in numbers]
        if bad or not value:
            raise ReproduceError(f"{where} = {value!r}: give paper experiment numbers 1..{len(PAPER_EXPERIMENTS)} "
                                 "(or null for every experiment of each notebook's family)")
        return sorted(set(value))
    if name == "mul_residual":
        return _check_mul_residual(where, value)
    if name == "extra_seeds":
        return _check_extra_seeds(where, value)
    if name in ("data_root", "out_dir", "figures_dir") and not value.strip():
        raise ReproduceError(f"{where} is empty")
    return value


def _check_mul_residual(where: str, value: list) -> list[int]:
    from vpkit.config import PAPER_EXPERIMENTS

    muls = [exp.number for exp in PAPER_EXPERIMENTS if exp.mode == "mul"]
    for number in value:
        if type(number) is int and number in muls:  # type(): True is no experiment number
            continue
        known = type(number) is int and 1 <= number <= len(PAPER_EXPERIMENTS)
        what = f"experiment {number} is {PAPER_EXPERIMENTS[number - 1].mode}, not mul" if known else \
            f"{number!r} is no experiment"
        raise ReproduceError(f"{where} = {value!r}: {what}; give paper mul experiment numbers "
                             f"{muls[0]}..{muls[-1]} to also train with prompt mode {MUL_RESIDUAL} (e.g. [22]), "
                             "or [] for none")
    return sorted(set(value))


def _check_extra_seeds(where: str, value: dict) -> dict[int, list[int]]:
    from vpkit.config import PAPER_EXPERIMENTS

    # papermill writes a dict's keys as strings ({"4": [1, 2]}); they are experiment numbers all the same
    value = {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in value.items()}
    for number, seeds in value.items():
        if type(number) is not int or not 1 <= number <= len(PAPER_EXPERIMENTS):
            raise ReproduceError(f"{where} = {value!r}: {number!r} is no experiment; map paper experiment numbers "
                                 f"1..{len(PAPER_EXPERIMENTS)} to lists of more seeds, e.g. {{4: [1, 2]}}, or {{}}")
        if not isinstance(seeds, list) or not seeds or any(type(seed) is not int or seed < 0 for seed in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ReproduceError(f"{where} = {value!r}: experiment {number} needs a list of distinct seeds "
                                 "(whole numbers >= 0), e.g. {4: [1, 2]}")
    return {number: list(seeds) for number, seeds in sorted(value.items())}


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
        options = " and ".join(f"--{name.replace('_', '-')}" for name in missing)
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


@dataclass
class Settings:
    """A notebook's parameters, checked, with paths resolved and folders made."""

    model: str
    data_root: Path
    experiments: list[int] | None
    mul_residual: list[int]  # mul experiments also trained with prompt mode mul_residual
    epochs: int | None
    batch_size: int | None
    lr: float | None
    limit: int | None
    device: str
    out_dir: Path
    figures_dir: Path
    seed: int
    extra_seeds: dict[int, list[int]] = field(default_factory=dict)  # experiment -> more seeds it is trained with

    @property
    def runs_dir(self) -> Path:
        return self.out_dir / "runs"

    @property
    def tables_dir(self) -> Path:
        return self.out_dir / "tables"


def notebook_settings(*, progress: bool = True, device_here: bool = True, **parameters) -> Settings:
    """Check a notebook's parameters, make the output folders and, for data_root="demo", the demo set.
    device_here=False keeps the device as asked (cpu, cuda, cuda:N, auto) for jobs that resolve it on their own
    node (`vpkit sweep --slurm`); by default it is resolved on this machine..

    Relative paths are relative to vpkit.resources.project_root() (the clone's root, where the README's
    `vpkit reproduce --profile demo` writes reproduce/demo), never to the folder Jupyter or papermill started in;
    figures_dir None is out_dir/figures."""
    from vpkit.device import resolve_device

    missing = sorted(set(PARAMETERS) - set(parameters))
    if missing:
        raise ReproduceError(f"notebook parameters: {', '.join(missing)} missing; the parameters cell sets "
                             f"all of {', '.join(PARAMETERS)}")
    values = check_parameters(parameters, "notebook parameters")
    out_dir = project_path(values["out_dir"])
    figures_dir = project_path(values["figures_dir"]) if values["figures_dir"] is not None else out_dir / "figures"
    for folder in (out_dir / "runs", out_dir / "tables", figures_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if values["data_root"] == DEMO_DATA:
        data_root = ensure_demo_data(out_dir / DEMO_DATA_FOLDER, progress=progress)
    else:
        data_root = existing_data_root(values["data_root"])
    model = values["model"]
    if project_path(model).exists():  # a model folder, relative like the other paths
        model = str(project_path(model))
    return Settings(model, data_root, values["experiments"], values["mul_residual"],
                    values["epochs"], values["batch_size"], values["lr"], values["limit"],
                    resolve_device(values["device"]) if device_here else values["device"], out_dir, figures_dir,
                    values["seed"], values["extra_seeds"])


def existing_data_root(data_root: str) -> Path:
    """The data_root parameter as an absolute folder (a relative one is taken from the project root,
    vpkit.resources.project_path); an error when it is not one."""
    folder = project_path(data_root)
    if not folder.is_dir():
        raise ReproduceError(f"data_root {folder} is not a folder; give the folder holding kadid10k/, "
                             f"koniq10k/, AGIQA-3K/ (see data/README.md), or '{DEMO_DATA}'")
    return folder


def ensure_demo_data(root: Path, progress: bool = True) -> Path:
    """The synthetic KADID-style demo set under `root` (160 references x 5 demo distortions x 5 levels, so the
    held-out test split has 16 references and 400 images), made if absent."""
    from vpkit.data.synth import DEFAULT_N_REFS, DEMO_DISTORTIONS, generate

    if not (root / "kadid10k" / "synthetic.json").is_file():  # the set is moved into place whole
        print(f"making the synthetic demo set in {root} (about 450 MB and a minute on 2 cores; scores are "
              f"synthetic, not human opinions): data_root = {DEMO_DATA!r} uses out_dir/{DEMO_DATA_FOLDER}, and "
              f"this out_dir has none yet; to share another folder's set, set data_root to its {DEMO_DATA_FOLDER}")
        generate(root, n_refs=DEFAULT_N_REFS, distortions=DEMO_DISTORTIONS, progress=progress)
    return root


# ----------------------------------------------------------------------------- datasets


@dataclass
class FoundDataset:
    """One dataset looked for under a data root: its table, or why it cannot be used."""

    name: str
    table: object | None  # vpkit.data.IQATable
    problems: list

    @property
    def usable(self) -> bool:
        return self.table is not None and not self.problems


def find_datasets(data_root: str | Path, seed: int = 42) -> dict[str, FoundDataset]:
    """Each of KADID-10k, KonIQ-10k and AGIQA-3K under `data_root`, loaded with the paper's split."""
    import warnings

    from vpkit.data import build_table

    found = {}
    for name in DATASET_ORDER:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a subset's image count is reported by `vpkit data check`
            table, problems = build_table(name, data_root, split="paper", seed=seed)
        found[name] = FoundDataset(name, table, list(problems))
    return found


def usable_tables(found: dict[str, FoundDataset]) -> dict:
    """name -> IQATable of the datasets that load without problems; an error when there are none."""
    usable = {name: item.table for name, item in found.items() if item.usable}
    if not usable:
        first = next((item.problems[0] for item in found.values() if item.problems), "nothing found")
        raise ReproduceError(f"no usable dataset: {first}")
    return usable


def usable_datasets(settings: Settings) -> list[str]:
    """Datasets that load without problems (and that `settings.experiments` asks for, when it is set)."""
    found = find_datasets(settings.data_root, settings.seed)
    wanted = {_dataset_of(n) for n in settings.experiments} if settings.experiments else set(DATASET_ORDER)
    unusable = [name for name in DATASET_ORDER if name in wanted and not found[name].usable]
    if settings.experiments and unusable:
        problem = found[unusable[0]].problems
        raise ReproduceError(f"experiments {settings.experiments} need {', '.join(unusable)}, which cannot be "
                             f"loaded from {settings.data_root}: {problem[0] if problem else 'not found'}")
    return [name for name in DATASET_ORDER if name in wanted and found[name].usable]


def _dataset_of(number: int) -> str:
    from vpkit.config import paper_experiment

    return paper_experiment(number).dataset


# ----------------------------------------------------------------------------- experiments


def family_experiments(family: str, settings: Settings) -> list[int]:
    """The paper experiments of one prompt family to run: `settings.experiments` (or all) of that family,
    on the datasets found under the data root."""
    from vpkit.config import PAPER_EXPERIMENTS

    if family not in FAMILIES:
        raise ReproduceError(f"unknown prompt family {family!r}; use one of {', '.join(FAMILIES)}")
    datasets = usable_datasets(settings)
    chosen = [exp.number for exp in PAPER_EXPERIMENTS
              if exp.prompt_type == family and exp.dataset in datasets
              and (settings.experiments is None or exp.number in settings.experiments)]
    skipped = [name for name in DATASET_ORDER if name not in datasets]
    if skipped and settings.experiments is None:
        print(f"not under {settings.data_root}, so skipped: {', '.join(skipped)}")
    return chosen


def mul_residual_variants(numbers: Iterable[int], settings: Settings) -> list[int]:
    """Which of `numbers` (the experiments a notebook trains, family_experiments) it also trains with prompt
    mode mul_residual: those in settings.mul_residual. A variant follows its experiment: none without it."""
    return [number for number in numbers if number in settings.mul_residual]


def experiment_config(number: int, settings: Settings, mode: str | None = None, seed: int | None = None):
    """Paper experiment `number` with the notebook's model, data, device and training overrides; with `mode`
    (mul_residual), that experiment in another prompt mode, named for it (vpkit.config.paper_config); with `seed`
    (one of settings.extra_seeds), trained with that seed instead, named ..._seedN (seed_run_name)."""
    from vpkit.config import paper_config

    overrides = {
        "model": {"name_or_path": settings.model},
        "dataset": {"root": str(settings.data_root)},
        "train": {"epochs": settings.epochs, "batch_size": settings.batch_size, "lr": settings.lr,
                  "limit": settings.limit, "device": settings.device, "seed": settings.seed},
    }
    source = f"experiment {number}{f' ({mode})' if mode else ''} with notebook parameters"
    config = paper_config(number, mode).with_overrides(overrides, source=source)
    if seed is None:
        return config
    return config.with_overrides({"name": seed_run_name(config.name, seed), "train": {"seed": seed}}, source=source)


def seed_run_name(name: str, seed: int) -> str:
    """The run of experiment `name` trained with another seed (extra_seeds): it stands beside the paper's run, and
    vpkit.tables counts it in that experiment's mean and range, never as its result."""
    return f"{name}_seed{seed}"


def experiment_configs(numbers: Iterable[int], settings: Settings, mul_residual: Iterable[int] = ()) -> list:
    """What to train, in order: each of `numbers` as the paper runs it, then each of `mul_residual` (from
    mul_residual_variants) with prompt mode mul_residual, then those of `numbers` in settings.extra_seeds with
    each of their other seeds."""
    numbers = list(numbers)
    return ([experiment_config(number, settings) for number in numbers]
            + [experiment_config(number, settings, MUL_RESIDUAL) for number in mul_residual]
            + [experiment_config(number, settings, seed=seed) for number in numbers
               for seed in settings.extra_seeds.get(number, [])])


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
                             "reproduce`) with these parameters first, or set out_dir to the folder that holds them")
    return found


def check_finished_run(config, run_dir: Path) -> None:
    """Refuse to reuse a finished or stopped run that was trained with other settings (train() would just report
    or continue it), naming the notebook parameters that differ and the values that would reuse it."""
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
                                             comparison.expected.to_dict()))


def _mismatch_message(run_dir: Path, status: str, changed: list, old: dict, new: dict) -> str:
    """One line: what differs (as notebook parameters where one sets it) and how to reuse or retrain."""
    parameters = [(PARAMETER_OF_FIELD[field], old[field[0]][field[1]], new[field[0]][field[1]])
                  for field in changed if field in PARAMETER_OF_FIELD]
    others = [f"{section}.{key} {old[section].get(key)!r} there, {new[section][key]!r} now"
              for section, key in changed if (section, key) not in PARAMETER_OF_FIELD]
    differences = [f"{name} = {there!r} there, {here!r} in this notebook" for name, there, here in parameters]
    what = "; ".join(differences + others) or "none visible (a different vpkit version?)"
    reuse = (f"to reuse it, set {', '.join(f'{name} = {there!r}' for name, there, _ in parameters)} in the "
             "parameters cell; " if parameters and not others else "")
    state = "finished" if status == "finished" else "stopped part-way"
    return (f"{run_dir}: this experiment was already trained there ({state}) with other settings ({what}); {reuse}"
            "to train it with these settings, set out_dir to another folder or delete that run folder")


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
    from vpkit.models import load_scorer

    dtype = "fp16" if settings.device.startswith("cuda") else "fp32"  # the paper's precision, on GPU
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


def zero_shot_scores(settings: Settings, datasets: Iterable[str], split: str = "test",
                     progress: bool = True) -> pd.DataFrame:
    """The frozen model without a prompt on each dataset's split: SRCC, PLCC, KRCC per score type
    (every type of vpkit.scoring, plus Q-Align's weighted levels)."""
    from vpkit.device import HALF_PRECISION, model_dtype_on
    from vpkit.models import load_scorer

    dtype = model_dtype_on(settings.device, HALF_PRECISION)  # the paper's precision where it is used
    scorer = load_scorer(settings.model, dtype=dtype, device=settings.device)
    frames = []
    for dataset in datasets:
        logits, mos = _zero_shot_logits(scorer, dataset, settings, split, progress)
        frame = _score_type_metrics(logits, mos, scorer.score_word_list)
        frame.insert(0, "dataset", dataset)
        frame["split"], frame["n_images"], frame["model"] = split, len(mos), settings.model
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _zero_shot_logits(scorer, dataset: str, settings: Settings, split: str, progress: bool):
    import numpy as np
    import torch

    from vpkit.data import load_table, make_loader
    from vpkit.device import HALF_PRECISION, amp_on
    from vpkit.evaluate import autocast, limit_table, to_model_input
    from vpkit.progress import tqdm

    table = load_table(dataset, settings.data_root, split="paper", seed=settings.seed)
    if settings.limit is not None:
        table = limit_table(table, settings.limit, settings.seed, split=split)
    loader = make_loader(table, split, scorer.image_size, settings.batch_size or 32, train=False,
                         seed=settings.seed, progress=progress)
    amp = amp_on(settings.device, HALF_PRECISION)
    logits, names = [], []
    with torch.no_grad():
        for batch in tqdm(loader, desc=f"zero-shot {dataset}", leave=False, disable=not progress):
            with autocast(settings.device, amp):
                logits.append(scorer.word_logits(to_model_input(batch["image"], settings.device)).float().cpu())
            names.extend(batch["name"])
    mos = table.frame.set_index("name")["mos"].loc[names].to_numpy(dtype=np.float64)
    return torch.cat(logits), mos


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
    cell raises ReproduceError naming the notebook, the cell and the error (the executed notebook is kept)."""
    import sys

    import papermill

    streams = {"stdout_file": sys.stdout, "stderr_file": sys.stderr} if stream_output else {}
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(source), str(target), parameters=parameters, kernel_name=KERNEL_NAME,
                                   progress_bar=not stream_output, cwd=str(target.parent),
                                   extra_arguments=KERNEL_ARGUMENTS, **streams)
    except papermill.PapermillExecutionError as error:
        cell = _source_cell_number(source, error)
        # the notebook's message names its parameters; `vpkit reproduce` sets them from the profile and options
        hint = (" (vpkit reproduce: the parameters come from the profile and the options of the same names, "
                "--limit, --epochs, ...; out_dir is --out)" if error.ename == RunSettingsError.__name__ else "")
        raise ReproduceError(
            f"{source} failed in cell {cell} (In [{error.exec_count}]): {error.ename}: {error.evalue}{hint}\n"
            f"the executed notebook with the traceback is {target}") from None
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


def _number_list(text: str | None, option: str = "--experiments") -> list[int] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return []
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ReproduceError(f"{option} {text!r}: give comma-separated numbers, e.g. 4,22,10, or none") \
            from None
