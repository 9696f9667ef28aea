"""The experiment schema, its validation, and the paper's 33 experiments.

An experiment is four sections (dataset, model, prompt, train) of plain dataclasses. `load_config`
reads vpkit YAML, the paper's own YAML (yahya-ben/mplug2-vp-for-nriqa configs/*.yaml) or a paper
experiment number. Every bad key or value is a `ConfigError` naming the file, the field and what is
allowed. `resolve_for_model` adapts a config to the model and device actually used (prompt size in
pixels at the model's image size, precision on CPU) and says what it changed.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vpkit.atomic import write_text_atomic
from vpkit.data.images import METHODS as PREPROCESS_METHODS
from vpkit.data.specs import DATASETS
from vpkit.data.splits import SPLIT_KINDS
from vpkit.device import amp_on, model_dtype_on
from vpkit.scoring import DEFAULT_SCORE_TYPE, SCORE_TYPES
from vpkit.vocabulary import PROMPT_MODES, PROMPT_TYPES, SHAPES

DTYPES = ("fp32", "fp16", "bf16")
AMP_MODES = ("none", "fp16", "bf16")
NORMALISATIONS = ("imagenet", "clip")
# Activation checkpointing of the frozen model (vpkit.models.checkpointing): none, every layer recomputed, only
# the cheap ops between matmuls recomputed, or full on the vision side and selective in the LLM.
CHECKPOINTING_MODES = ("off", "full", "selective", "mixed")
# train.compile: false (eager), true (torch.compile's default mode) or one of torch.compile's modes by name;
# "reduce-overhead" replays CUDA graphs (no per-kernel launch cost), "max-autotune-no-cudagraphs" tunes kernels.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# The paper's prompts are sized in pixels of mPLUG-Owl2's 448 px input.
PAPER_IMAGE_SIZE = 448
# Where the paper experiments expect the MAGAer13/mplug-owl2-llama2-7b weights (override with --model).
PAPER_MODEL_PATH = "models/mplug-owl2-llama2-7b"
PAPER_DATA_ROOT = "data"

# Fields that only say where/how fast a run executes; they are left out of the config hash so that a run can be
# resumed on another device of the same kind (another GPU, another CPU machine) or with another worker count.
# The precision is in the hash: resolve_for_model turns fp16 into fp32 off CUDA, so an experiment that asks
# for fp16 (the paper's, e.g. experiment 4) hashes differently on CPU and on CUDA, and a run of it started on
# a GPU cannot be continued on a CPU (it would compute in another precision) and vice versa.
OPERATIONAL_FIELDS = {
    "train": ("device", "num_workers", "cache_dir", "compile", "checkpointing", "deterministic", "compile_cache_dir"),
    "dataset": ("root",),
}


class ConfigError(ValueError):
    """A config file or value is invalid; the message names the source, the field and the fix."""


@dataclass
class DatasetConfig:
    name: str = "kadid"
    root: str = PAPER_DATA_ROOT
    split: str = "paper"
    preprocess: str = "resize_crop"
    layout: str = "auto"


@dataclass
class ModelConfig:
    name_or_path: str = PAPER_MODEL_PATH
    dtype: str = "fp16"
    normalisation: str | None = "imagenet"
    score_type: str = DEFAULT_SCORE_TYPE


@dataclass
class PromptConfig:
    type: str = "padding"
    size: int | None = 30
    mode: str = "add"
    delta: float = 1.0
    is_center: bool = False
    # The input image size that `size` is measured at (448 for the paper's experiments).
    image_size: int = PAPER_IMAGE_SIZE


@dataclass
class TrainConfig:
    epochs: int = 25
    batch_size: int = 32
    eval_batch_size: int = 32
    lr: float = 60.0
    momentum: float = 0.0
    weight_decay: float = 0.0
    patience: int = 6
    seed: int = 42
    grad_accum: int = 1
    # Clip each optimiser step's total gradient norm to this (after unscaling, before the step); None = off.
    # 1.0 is the paper's: its Hugging Face Trainer never sets max_grad_norm, whose default is 1.0.
    max_grad_norm: float | None = 1.0
    amp: str = "fp16"
    checkpointing: str = "off"
    compile: bool | str = False
    # Where torch.compile keeps what it compiled (inductor's FX-graph and AOTAutograd caches), so that the next
    # process with the same shapes loads it instead of compiling again. None: $TORCHINDUCTOR_CACHE_DIR if set,
    # else $XDG_CACHE_HOME/vpkit/torch-compile (~/.cache/vpkit/torch-compile).
    compile_cache_dir: str | None = None
    num_workers: int | None = None
    device: str = "auto"
    cache_dir: str | None = None
    # Use at most this many images of each split (quick runs); None = all.
    limit: int | None = None
    # Deterministic kernels where torch has them (bitwise-repeatable runs); off can be faster on CUDA.
    deterministic: bool = True


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    number: int | None = None
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def hash(self) -> str:
        """A short digest of everything that changes the result (not device, workers, cache)."""
        identity = self.to_dict()
        for section, names in OPERATIONAL_FIELDS.items():
            for name in names:
                identity[section].pop(name, None)
        text = json.dumps(identity, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def with_overrides(self, overrides: dict, source: str = "overrides") -> ExperimentConfig:
        """A new validated config with `{"train": {"epochs": 2}, ...}` merged in (None values skipped)."""
        merged = self.to_dict()
        for key, value in overrides.items():
            if isinstance(value, dict):
                if key not in merged or not isinstance(merged[key], dict):
                    raise ConfigError(f"{source}: unknown section '{key}'; allowed: {_section_names()}")
                merged[key].update({k: v for k, v in value.items() if v is not None})
            elif value is not None:
                merged[key] = value
        return config_from_dict(merged, source)


SECTIONS = {
    "dataset": DatasetConfig,
    "model": ModelConfig,
    "prompt": PromptConfig,
    "train": TrainConfig,
}

CHOICES = {
    ("dataset", "name"): DATASETS,
    ("dataset", "split"): SPLIT_KINDS,
    ("dataset", "preprocess"): PREPROCESS_METHODS,
    ("model", "dtype"): DTYPES,
    ("model", "normalisation"): NORMALISATIONS,
    ("model", "score_type"): tuple(SCORE_TYPES),
    ("prompt", "type"): PROMPT_TYPES,
    ("prompt", "mode"): PROMPT_MODES,
    ("train", "amp"): AMP_MODES,
    ("train", "checkpointing"): CHECKPOINTING_MODES,
}

# Numeric lower bounds: (minimum, inclusive).
BOUNDS = {
    ("prompt", "size"): (1, True),
    ("prompt", "delta"): (0, False),
    ("prompt", "image_size"): (1, True),
    ("train", "epochs"): (1, True),
    ("train", "batch_size"): (1, True),
    ("train", "eval_batch_size"): (1, True),
    ("train", "lr"): (0, False),
    ("train", "momentum"): (0, True),
    ("train", "weight_decay"): (0, True),
    ("train", "patience"): (1, True),
    ("train", "grad_accum"): (1, True),
    ("train", "max_grad_norm"): (0, False),
    ("train", "num_workers"): (0, True),
    ("train", "limit"): (3, True),
    ("train", "seed"): (0, True),
}


def _section_names() -> str:
    return ", ".join(SECTIONS)


def _field_types(cls) -> dict[str, str]:
    return {f.name: f.type for f in dataclasses.fields(cls)}


def check_field(where: str, section: str, name: str, value: Any) -> Any:
    """One setting's value checked by the schema's rules (type, choices, bounds), for a caller that takes it under
    another name (vpkit reproduce's notebook parameters); returns it normalised, or raises ConfigError naming
    `where`."""
    return _check_value(where, section, name, _field_types(SECTIONS[section])[name], value, where=where)


def _check_value(source: str, section: str, name: str, annotation: str, value: Any, where: str | None = None) -> Any:
    where = where or f"{source}: {section}.{name}"
    if (section, name) == ("train", "checkpointing") and isinstance(value, bool):
        if value:
            raise ConfigError(f"{where} = true is not allowed; choose one of: {', '.join(CHECKPOINTING_MODES)}")
        value = "off"  # YAML reads a bare `off` as false
    if value is None:
        if "None" in annotation:
            return None
        raise ConfigError(f"{where} must not be empty (null); expected {annotation}")
    if (section, name) == ("train", "compile"):
        return _check_compile(where, value)
    if (section, name) == ("train", "device"):
        from vpkit.device import device_problem

        problem = device_problem(value)
        if problem is not None:
            raise ConfigError(f"{where} (--device) = {problem}")
        return value
    if annotation.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where} = {value!r} must be true or false")
    elif annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(f"{where} = {value!r} must be a whole number")
    elif annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} = {value!r} must be a number")
        value = float(value)
        if not math.isfinite(value):  # NaN passes every comparison below, inf breaks the arithmetic later
            raise ConfigError(f"{where} = {value!r} must be a finite number")
    elif annotation.startswith("str") and (not isinstance(value, str) or not value):
        raise ConfigError(f"{where} = {value!r} must be a non-empty string")
    choices = CHOICES.get((section, name))
    if choices and value not in choices:
        raise ConfigError(f"{where} = {value!r} is not allowed; choose one of: {', '.join(choices)}")
    bound = BOUNDS.get((section, name))
    if bound is not None:
        minimum, inclusive = bound
        if value < minimum or (not inclusive and value == minimum):
            relation = ">=" if inclusive else ">"
            raise ConfigError(f"{where} = {value!r} must be {relation} {minimum}")
    return value


def _check_compile(where: str, value: Any) -> bool | str:
    """train.compile as true/false or a torch.compile mode name; "default" is true (one spelling per meaning)."""
    if isinstance(value, bool) or value in COMPILE_MODES[1:]:
        return value
    if value == "default":
        return True
    raise ConfigError(f"{where} = {value!r} is not allowed; choose true, false or a torch.compile mode: "
                      f"{', '.join(COMPILE_MODES)}")


def _section_from_dict(source: str, section: str, values: Any):
    cls = SECTIONS[section]
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{section}' must be a mapping of keys to values")
    types = _field_types(cls)
    unknown = sorted(set(values) - set(types))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
            f"allowed in '{section}': {', '.join(types)}"
        )
    checked = {
        name: _check_value(source, section, name, types[name], value) for name, value in values.items()
    }
    return cls(**checked)


def _check_consistency(source: str, config: ExperimentConfig) -> None:
    prompt = config.prompt
    if prompt.type == "full":
        prompt.size = None  # a full overlay covers the image; the paper's files carry an unused size
    elif prompt.size is None:
        raise ConfigError(f"{source}: prompt.size is required for prompt.type '{prompt.type}'")
    elif prompt.type in ("padding", "replace_pad") and 2 * prompt.size >= prompt.image_size:
        raise ConfigError(
            f"{source}: prompt.size = {prompt.size} leaves no image inside a {prompt.image_size} px "
            f"padding frame; use a size below {prompt.image_size // 2}"
        )
    elif prompt.type == "fixed_patch" and prompt.size > prompt.image_size:
        raise ConfigError(
            f"{source}: prompt.size = {prompt.size} is larger than the {prompt.image_size} px image"
        )
    if prompt.type == "replace_pad" and prompt.mode != "add":
        raise ConfigError(
            f"{source}: prompt.type 'replace_pad' replaces the border and has no mode; "
            "leave prompt.mode at 'add'"
        )
    if prompt.is_center and prompt.type != "fixed_patch":
        raise ConfigError(f"{source}: prompt.is_center only applies to prompt.type 'fixed_patch'")


def config_from_dict(data: Any, source: str = "config") -> ExperimentConfig:
    """Validate a vpkit config mapping; raise `ConfigError` naming `source` and the field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a config must be a mapping with sections {_section_names()}")
    allowed = {"name", "number", *SECTIONS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )
    name = data.get("name", "experiment")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{source}: name = {name!r} must be a non-empty string")
    number = data.get("number")
    if number is not None and (isinstance(number, bool) or not isinstance(number, int)):
        raise ConfigError(f"{source}: number = {number!r} must be a whole number or null")
    sections = {section: _section_from_dict(source, section, data.get(section)) for section in SECTIONS}
    config = ExperimentConfig(name=name, number=number, **sections)
    _check_consistency(source, config)
    return config


# ---------------------------------------------------------------------------------------------
# The paper's 33 experiments (yahya-ben/mplug2-vp-for-nriqa, configs/SGD_mplug2_exp_NN_*.yaml).
# Columns: number, dataset, prompt type, size (px at 448), position, mode.
# Shared by all 33: lr 60, SGD without momentum, weight decay 0, constant schedule, no warm-up,
# seed 42, fp16, score "good+fine_vs_poor+bad", patience 6, eval batch 32; see PAPER_DATASET_SETTINGS.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperExperiment:
    number: int
    dataset: str
    prompt_type: str
    size: int | None
    position: str  # a key of vpkit.vocabulary.SHAPES: "border", "center", "top_left" or "whole"
    mode: str

    @property
    def paper_name(self) -> str:
        """The experiment name used in the paper's repository."""
        shape = SHAPES[self.position].paper_name_part.format(size=self.size)
        return f"SGD_mplug2_exp_{self.number:02d}_{self.dataset}_{shape}_{self.mode}"

    @property
    def name(self) -> str:
        size = "" if self.size is None else f"_{self.size}px"
        return f"exp_{self.number:02d}_{self.dataset}_{SHAPES[self.position].name_part}{size}_{self.mode}"


PAPER_EXPERIMENTS: tuple[PaperExperiment, ...] = tuple(
    PaperExperiment(*row)
    for row in [
        (1, "kadid", "padding", 10, "border", "add"),
        (2, "koniq", "padding", 10, "border", "add"),
        (3, "agiqa", "padding", 10, "border", "add"),
        (4, "kadid", "padding", 30, "border", "add"),
        (5, "koniq", "padding", 30, "border", "add"),
        (6, "agiqa", "padding", 30, "border", "add"),
        (7, "kadid", "fixed_patch", 10, "center", "add"),
        (8, "koniq", "fixed_patch", 10, "center", "add"),
        (9, "agiqa", "fixed_patch", 10, "center", "add"),
        (10, "kadid", "fixed_patch", 30, "center", "add"),
        (11, "koniq", "fixed_patch", 30, "center", "add"),
        (12, "agiqa", "fixed_patch", 30, "center", "add"),
        (13, "kadid", "fixed_patch", 10, "top_left", "add"),
        (14, "koniq", "fixed_patch", 10, "top_left", "add"),
        (15, "agiqa", "fixed_patch", 10, "top_left", "add"),
        (16, "kadid", "fixed_patch", 30, "top_left", "add"),
        (17, "koniq", "fixed_patch", 30, "top_left", "add"),
        (18, "agiqa", "fixed_patch", 30, "top_left", "add"),
        (19, "kadid", "full", None, "whole", "add"),
        (20, "koniq", "full", None, "whole", "add"),
        (21, "agiqa", "full", None, "whole", "add"),
        (22, "kadid", "padding", 30, "border", "mul"),
        (23, "koniq", "padding", 30, "border", "mul"),
        (24, "agiqa", "padding", 30, "border", "mul"),
        (25, "kadid", "fixed_patch", 30, "center", "mul"),
        (26, "koniq", "fixed_patch", 30, "center", "mul"),
        (27, "agiqa", "fixed_patch", 30, "center", "mul"),
        (28, "kadid", "fixed_patch", 30, "top_left", "mul"),
        (29, "koniq", "fixed_patch", 30, "top_left", "mul"),
        (30, "agiqa", "fixed_patch", 30, "top_left", "mul"),
        (31, "kadid", "full", None, "whole", "mul"),
        (32, "koniq", "full", None, "whole", "mul"),
        (33, "agiqa", "full", None, "whole", "mul"),
    ]
)

# Per-dataset training batch size and epoch count, as in the paper's configs.
PAPER_DATASET_SETTINGS = {
    "kadid": {"batch_size": 32, "epochs": 25},
    "koniq": {"batch_size": 4, "epochs": 25},
    "agiqa": {"batch_size": 4, "epochs": 35},
}


def paper_experiment(number: int) -> PaperExperiment:
    if not 1 <= number <= len(PAPER_EXPERIMENTS):
        raise ConfigError(
            f"experiment number {number} does not exist; the paper has 1..{len(PAPER_EXPERIMENTS)}"
        )
    return PAPER_EXPERIMENTS[number - 1]


def paper_config(number: int, mode: str | None = None) -> ExperimentConfig:
    """The validated config of paper experiment `number` (1..33). With `mode`, the same experiment in another
    prompt mode (vpkit's mul_residual fix of a mul experiment: not a paper experiment), its name ending in that
    mode instead, e.g. exp_22_kadid_padding_30px_mul_residual, so its run folder stands beside the paper's."""
    exp = paper_experiment(number)
    if mode is not None:
        exp = dataclasses.replace(exp, mode=mode)
    settings = PAPER_DATASET_SETTINGS[exp.dataset]
    data = {
        "name": exp.name,
        "number": exp.number,
        "dataset": {"name": exp.dataset},
        "model": {},
        "prompt": {
            "type": exp.prompt_type,
            "size": exp.size,
            "mode": exp.mode,
            "is_center": SHAPES[exp.position].is_center,
        },
        "train": dict(settings),
    }
    return config_from_dict(data, source=f"paper experiment {number}")


def write_paper_configs(out_dir: str | Path) -> list[Path]:
    """Write configs/exp_01.yaml .. exp_33.yaml from PAPER_EXPERIMENTS (atomically)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for exp in PAPER_EXPERIMENTS:
        path = out_dir / f"exp_{exp.number:02d}.yaml"
        header = (
            f"# Paper experiment {exp.number} ({exp.paper_name}); from vpkit.config.write_paper_configs\n"
        )
        write_text_atomic(path, header + paper_config(exp.number).to_yaml())
        written.append(path)
    return written


# ---------------------------------------------------------------------------------------------
# The paper's own YAML files.
# ---------------------------------------------------------------------------------------------

# Keys of the paper's `training:` section and the vpkit train field each maps onto.
PAPER_TRAINING_KEYS = {
    "num_train_epochs": "epochs",
    "learning_rate": "lr",
    "per_device_train_batch_size": "batch_size",
    "per_device_eval_batch_size": "eval_batch_size",
    "weight_decay": "weight_decay",
    "gradient_accumulation_steps": "grad_accum",
    "seed": "seed",
    "max_grad_norm": "max_grad_norm",  # absent from the paper's files: the Trainer's default 1.0 applies
}
# Keys whose value must be the one vpkit implements (anything else would silently differ).
PAPER_FIXED_VALUES = {
    "optim": ("sgd",),
    "lr_scheduler_type": ("constant",),
    "warmup_steps": (0,),
    "evaluation_strategy": ("epoch",),
    "save_strategy": ("epoch",),
    "load_best_model_at_end": (True,),
    "metric_for_best_model": ("metric",),
    "greater_is_better": (True,),
}
PAPER_IGNORED_KEYS = ("output_dir",)
PAPER_VLM_PATHS = {"mplug2": PAPER_MODEL_PATH}


def is_paper_yaml(data: Any) -> bool:
    return isinstance(data, dict) and "experiment_name" in data and "training" in data


def _paper_prompt(source: str, model: dict) -> dict:
    prompt = model.get("visual_prompt")
    if not isinstance(prompt, dict) or "type" not in prompt:
        raise ConfigError(f"{source}: model.visual_prompt.type is missing")
    args = dict(prompt.get("args") or {})
    unknown = sorted(set(args) - {"size", "delta", "mode", "is_center"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) model.visual_prompt.args.{', '.join(unknown)}")
    return {"type": prompt["type"], **args}


def _paper_train(source: str, training: dict) -> dict:
    train = {}
    for key, value in training.items():
        if key == "max_grad_norm" and value == 0:
            train["max_grad_norm"] = None  # the Trainer clips only when max_grad_norm > 0
        elif key in PAPER_TRAINING_KEYS:
            train[PAPER_TRAINING_KEYS[key]] = value
        elif key in PAPER_FIXED_VALUES:
            if value not in PAPER_FIXED_VALUES[key]:
                raise ConfigError(
                    f"{source}: training.{key} = {value!r} is not supported; vpkit implements "
                    f"{PAPER_FIXED_VALUES[key][0]!r} only"
                )
        elif key not in PAPER_IGNORED_KEYS:
            known = [*PAPER_TRAINING_KEYS, *PAPER_FIXED_VALUES, *PAPER_IGNORED_KEYS]
            raise ConfigError(f"{source}: unknown key training.{key}; known: {', '.join(known)}")
    return train


def _paper_dataset(source: str, dataset: Any) -> dict:
    if not isinstance(dataset, dict) or "train" not in dataset:
        raise ConfigError(f"{source}: dataset.train (path, name, split) is missing")
    names = {part.get("name") for part in dataset.values() if isinstance(part, dict)}
    if len(names) != 1:
        raise ConfigError(
            f"{source}: dataset train/eval/test name different datasets {sorted(map(str, names))}; "
            "vpkit trains and tests on one dataset (use `vpkit eval` for cross-dataset tests)"
        )
    train = dataset["train"]
    return {"name": train.get("name"), "root": train.get("path", PAPER_DATA_ROOT)}


def config_from_paper_yaml(data: dict, source: str) -> ExperimentConfig:
    """Map one of the paper's YAML files onto the vpkit schema."""
    unknown = sorted(set(data) - {"experiment_name", "model", "quality_score_type", "training", "dataset"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {', '.join(unknown)} in a paper-style config")
    model = data.get("model") or {}
    vlm = model.get("vlm_name", "mplug2")
    if vlm not in PAPER_VLM_PATHS:
        raise ConfigError(
            f"{source}: model.vlm_name = {vlm!r} is not supported; use one of {list(PAPER_VLM_PATHS)}"
        )
    name = str(data["experiment_name"])
    number = None
    for exp in PAPER_EXPERIMENTS:
        if exp.paper_name == name:
            number = exp.number
    train = {"patience": 6, **_paper_train(source, data.get("training") or {})}
    converted = {
        "name": PAPER_EXPERIMENTS[number - 1].name if number else name,
        "number": number,
        "dataset": _paper_dataset(source, data.get("dataset")),
        "model": {
            "name_or_path": PAPER_VLM_PATHS[vlm],
            "score_type": data.get("quality_score_type", DEFAULT_SCORE_TYPE),
        },
        "prompt": _paper_prompt(source, model),
        "train": train,
    }
    return config_from_dict(converted, source)


# ---------------------------------------------------------------------------------------------
# Loading and resolving.
# ---------------------------------------------------------------------------------------------


def _parse_number(text: str) -> int | None:
    stem = text.lower().removeprefix("exp_").removeprefix("exp")
    return int(stem) if stem.isdigit() else None


def load_config(path_or_number: str | int | Path) -> ExperimentConfig:
    """A validated config from a YAML path (vpkit or paper style) or a paper experiment number."""
    if isinstance(path_or_number, int) and not isinstance(path_or_number, bool):
        return paper_config(path_or_number)
    path = Path(path_or_number)
    if not path.exists():
        number = _parse_number(str(path_or_number))
        if number is not None:
            return paper_config(number)
        raise ConfigError(f"{path}: no such config file (give a YAML path or an experiment number 1..33)")
    data = load_yaml_file(path)
    if is_paper_yaml(data):
        return config_from_paper_yaml(data, str(path))
    return config_from_dict(data, str(path))


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's SafeLoader, except that a key given twice in one mapping is an error (yaml keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise ConfigError(f"line {line}: key {key!r} appears twice in one mapping (first on line "
                                      f"{seen[key]}); keep one")
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_file(path: str | Path, error: type[Exception] = ConfigError) -> Any:
    """The data of a YAML file (configs, profiles, a run's config.yaml); a duplicate key, bad YAML or an
    unreadable file is `error` naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a text file (not UTF-8: {exc.reason} at byte {exc.start}); "
                    "give a YAML file") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ConfigError as exc:
        raise error(f"{path}, {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{path}{where}: not valid YAML ({problem}); fix the file or restore it") from None


def scaled_prompt_size(size: int, from_size: int, to_size: int) -> int:
    """A prompt size in pixels moved to another image size, rounded half up (at least 1 px)."""
    return max(1, int(size * to_size / from_size + 0.5))


def resolve_for_model(
    config: ExperimentConfig, image_size: int, device: str
) -> tuple[ExperimentConfig, list[str]]:
    """The config as it will actually run on a model of `image_size` px on `device`, and notes on changes.

    The prompt size is rescaled when the model's input size differs from the size the experiment was
    written for (the tiny preset is 224 px; the paper's 448). Half precision is a CUDA feature here:
    on CPU the model dtype and autocast fall back to fp32.
    """
    resolved = copy.deepcopy(config)
    notes = []
    prompt = resolved.prompt
    if prompt.image_size != image_size:
        if prompt.size is not None:
            new_size = scaled_prompt_size(prompt.size, prompt.image_size, image_size)
            notes.append(
                f"prompt size {prompt.size} px at {prompt.image_size} px -> {new_size} px at the model's "
                f"{image_size} px input"
            )
            prompt.size = new_size
        prompt.image_size = image_size
    resolved.train.device = device
    dtype, amp = model_dtype_on(device, resolved.model.dtype), amp_on(device, resolved.train.amp)
    if dtype != resolved.model.dtype:
        notes.append(f"model dtype {resolved.model.dtype} -> {dtype} (half precision is used on CUDA only)")
        resolved.model.dtype = dtype
    if amp != resolved.train.amp:
        notes.append(f"amp {resolved.train.amp} -> {amp} (autocast fp16 is used on CUDA only)")
        resolved.train.amp = amp
    if not device.startswith("cuda") and resolved.train.compile:
        notes.append("compile -> off (torch.compile of the scorer is used on CUDA only)")
        resolved.train.compile = False
    checked = config_from_dict(resolved.to_dict(), source=f"{config.name} (resolved)")
    return checked, notes
