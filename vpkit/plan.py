"""Planning a reproduction: which paper experiments, with which settings, into which folders.

One home for the notebooks' parameters (PARAMETERS: their names, types and checks), the settings they make
(`plan_settings`), the experiments each training notebook runs (`family_experiments`, `mul_residual_variants`)
and their configs (`experiment_configs`). The notebooks (through vpkit.reproduce.notebook_settings), `vpkit
reproduce` and `vpkit sweep` all plan here, so a sweep trains exactly what the notebooks would, into the same run
folders.

Planning has no side effects: it makes no folder, generates no data and resolves no device unless asked (a Slurm
job resolves "auto" on its own node). It reads what is there: the datasets under the data root, to know which
experiments can run. Making the folders and the demo data is vpkit.reproduce's (notebook_settings).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from vpkit.data.specs import DATASETS as DATASET_ORDER
from vpkit.resources import project_path

DEMO_DATA = "demo"  # data_root value meaning "the generated synthetic set, made if absent"
DEMO_DATA_FOLDER = "demo_data"  # where it is made, inside out_dir
DEMO_DATASET = "kadid"  # vpkit.data.synth generates a KADID-10k-style set (kadid10k/)
FAMILIES = ("padding", "fixed_patch", "full")  # the three training notebooks, by prompt type
MUL_RESIDUAL = "mul_residual"  # the prompt mode of vpkit's fix of the paper's mul

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
# Who sets the parameters, so a message names what that person changes: a notebook's parameters cell, or the
# options of `vpkit reproduce` / `vpkit sweep`. vpkit reproduce sets CALLER_VARIABLE for the notebooks it runs.
CALLER_VARIABLE = "VPKIT_PARAMETERS_FROM"
NOTEBOOK, COMMAND_LINE = "notebook", "command line"
OPTION_OF_PARAMETER = {"out_dir": "--out"}  # the rest: --name-with-dashes


def caller() -> str:
    """NOTEBOOK, or COMMAND_LINE when `vpkit reproduce` runs this notebook (CALLER_VARIABLE)."""
    return COMMAND_LINE if os.environ.get(CALLER_VARIABLE) == COMMAND_LINE else NOTEBOOK


def option(name: str) -> str:
    """The command-line option of notebook parameter `name` (vpkit reproduce and vpkit sweep share them)."""
    return OPTION_OF_PARAMETER.get(name, "--" + name.replace("_", "-"))


def named(name: str, who: str | None = None) -> str:
    """Notebook parameter `name` as `who` (default: caller()) sets it: the name itself, or its option."""
    return option(name) if (who or caller()) == COMMAND_LINE else name


def how_to_set(values: Mapping[str, object], who: str | None = None) -> str:
    """"set epochs = 1, limit = 16 in the parameters cell" or "give --epochs 1 --limit 16", as `who` sets them."""
    if (who or caller()) == COMMAND_LINE:
        return "give " + " ".join(f"{option(name)} {value}" for name, value in values.items())
    return "set " + ", ".join(f"{name} = {value!r}" for name, value in values.items()) + " in the parameters cell"


class ReproduceError(RuntimeError):
    """Bad parameters or profile, or a notebook that failed; the message says where and what to do."""

    def _render_traceback_(self) -> list[str]:
        """How IPython (a notebook) shows this error: the one-line message, which names the parameter to change,
        without vpkit's internal traceback."""
        return [f"{type(self).__name__}: {self}"]


class RunSettingsError(ReproduceError):
    """A run folder under out_dir holds the experiment trained with other settings; the message names the
    parameters to change the way their caller sets them (how_to_set)."""


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


# ----------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """A notebook's parameters, checked, with paths absolute (plan_settings)."""

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
    demo_data: bool = False  # data_root is the generated demo set (vpkit.reproduce.notebook_settings makes it)

    @property
    def runs_dir(self) -> Path:
        return self.out_dir / "runs"

    @property
    def tables_dir(self) -> Path:
        return self.out_dir / "tables"


def notebook_parameters(namespace: Mapping[str, object]) -> dict:
    """The notebook parameters (PARAMETERS) out of a notebook's namespace (`globals()` after its parameters
    cell), so the settings cell names none of them."""
    missing = [name for name in PARAMETERS if name not in namespace]
    if missing:
        raise ReproduceError(f"notebook parameters: {', '.join(missing)} missing; the parameters cell sets "
                             f"all of {', '.join(PARAMETERS)}")
    return {name: namespace[name] for name in PARAMETERS}


def plan_settings(parameters: Mapping[str, object], *, resolve_device: bool = False) -> Settings:
    """Checked settings from every notebook parameter, paths absolute; nothing is made. data_root "demo" is
    out_dir/demo_data, whether or not it is there yet (vpkit.reproduce.notebook_settings makes it). The device
    stays as asked (cpu, cuda, cuda:N, auto) unless `resolve_device`, which resolves it on this machine.

    Relative paths are relative to vpkit.resources.project_root() (the clone's root, where the README's
    `vpkit reproduce --profile demo` writes reproduce/demo), never to the folder Jupyter or papermill started in;
    figures_dir None is out_dir/figures."""
    missing = sorted(set(PARAMETERS) - set(parameters))
    if missing:
        raise ReproduceError(f"notebook parameters: {', '.join(missing)} missing; give all of {', '.join(PARAMETERS)}")
    values = check_parameters(dict(parameters), "notebook parameters")
    out_dir = project_path(values["out_dir"])
    figures_dir = project_path(values["figures_dir"]) if values["figures_dir"] is not None else out_dir / "figures"
    if values["data_root"] == DEMO_DATA:
        data_root = out_dir / DEMO_DATA_FOLDER
    else:
        data_root = existing_data_root(values["data_root"])
    model = values["model"]
    if project_path(model).exists():  # a model folder, relative like the other paths
        model = str(project_path(model))
    device = values["device"]
    if resolve_device:
        from vpkit.device import resolve_device as resolve

        device = resolve(device)
    return Settings(model, data_root, values["experiments"], values["mul_residual"], values["epochs"],
                    values["batch_size"], values["lr"], values["limit"], device, out_dir, figures_dir, values["seed"],
                    values["extra_seeds"], demo_data=values["data_root"] == DEMO_DATA)


def demo_data_made(root: Path) -> bool:
    """Whether the demo set is under `root` (vpkit.data.synth moves it into place whole, its record last)."""
    return (root / "kadid10k" / "synthetic.json").is_file()


def existing_data_root(data_root: str) -> Path:
    """The data_root parameter as an absolute folder (a relative one is taken from the project root,
    vpkit.resources.project_path); an error when it is not one."""
    folder = project_path(data_root)
    if not folder.is_dir():
        raise ReproduceError(f"data_root {folder} is not a folder; give the folder holding kadid10k/, "
                             f"koniq10k/, AGIQA-3K/ (see data/README.md), or '{DEMO_DATA}'")
    return folder


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
    """Datasets that load without problems (and that `settings.experiments` asks for, when it is set). The demo
    set, before it is made, is planned as the one dataset it will hold."""
    wanted = {_dataset_of(n) for n in settings.experiments} if settings.experiments else set(DATASET_ORDER)
    if settings.demo_data and not demo_data_made(settings.data_root):
        usable, problems = {DEMO_DATASET}, {}
    else:
        found = find_datasets(settings.data_root, settings.seed)
        usable = {name for name, item in found.items() if item.usable}
        problems = {name: item.problems for name, item in found.items()}
    unusable = [name for name in DATASET_ORDER if name in wanted and name not in usable]
    if settings.experiments and unusable:
        problem = problems.get(unusable[0])
        raise ReproduceError(f"experiments {settings.experiments} need {', '.join(unusable)}, which cannot be "
                             f"loaded from {settings.data_root}: {problem[0] if problem else 'not found'}")
    return [name for name in DATASET_ORDER if name in wanted and name in usable]


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
