"""The prompt checkpoint format: a prompt's tensors (paper key names) in a safetensors file whose metadata says
which run and prompter it belongs to; saving it byte-for-byte reproducibly, loading it, refusing one of another
run, and the atomic torch and file copies a run's checkpoints go through."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open
from safetensors.torch import save as safetensors_bytes

from vpkit.atomic import _json_default, atomic_replace, json_safe
from vpkit.runs.files import CONFIG_FILE, RunFolderError


def torch_save_atomic(path: str | Path, obj: Any) -> None:
    atomic_replace(path, lambda tmp: torch.save(obj, tmp))


def copy_checkpoint(source: str | Path, target: str | Path) -> None:
    """Copy a checkpoint file atomically (best.safetensors from the best epoch's file)."""
    atomic_replace(target, lambda tmp: shutil.copyfile(source, tmp))


def epoch_checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:02d}.safetensors"


def save_prompt_checkpoint(path: str | Path, state_dict: dict, metadata: dict) -> None:
    """Save a prompt state dict (paper key names) with string-encoded metadata, atomically.

    The same prompt and metadata give the same bytes, so checkpoints can be compared by hash."""
    tensors = {key: value.detach().to("cpu", torch.float32).contiguous() for key, value in state_dict.items()}
    text_metadata = {
        key: value if isinstance(value, str) else json.dumps(json_safe(value), default=_json_default, sort_keys=True)
        for key, value in metadata.items()
    }
    blob = _sorted_metadata(safetensors_bytes(tensors, metadata=text_metadata))
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(blob))


def _sorted_metadata(blob: bytes) -> bytes:
    """A safetensors file with its header's metadata keys sorted.

    safetensors keeps the metadata in a Rust HashMap, which writes its keys in another order in every process
    (the tensors are already sorted). The data offsets count from the end of the header, so only the header
    changes; it stays padded with spaces to a multiple of 8 bytes, as safetensors writes it."""
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + length :]


def prompt_checkpoint_metadata(config, prompter, epoch: int, metrics: dict, **extra) -> dict:
    """What a prompt checkpoint records: enough to rebuild the prompter and its model without config.yaml."""
    return {
        "format": "vpkit-prompt",
        "config_hash": config.hash(),
        "name": config.name,
        "epoch": epoch,
        "metrics": metrics,
        "prompt": prompter.spec(),
        "model": config.model.name_or_path,
        "dtype": config.model.dtype,
        "normalisation": config.model.normalisation,
        "score_type": config.model.score_type,
        "preprocess": config.dataset.preprocess,
        **extra,
    }


def load_prompt_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state_dict, metadata) of a prompt checkpoint; JSON metadata values are decoded."""
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"{path}: prompt checkpoint not found")
    if path.suffix in (".pth", ".pt", ".bin"):
        raise RunFolderError(f"{path}: a torch file, not a vpkit prompt checkpoint; make a run folder of it with "
                             f"`vpkit import-prompt {path} --experiment N --out DIR` and use that folder")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw = handle.metadata() or {}
        tensors = load_file(str(path))
    except SafetensorError as error:
        raise RunFolderError(
            f"{path}: not a readable safetensors prompt checkpoint ({error}); it is damaged or another "
            "format (a paper visual_prompt.pth goes through `vpkit import-prompt` first)"
        ) from None
    metadata = {}
    for key, value in raw.items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value
    return tensors, metadata


def prompt_spec_of(config) -> dict:
    """The prompter spec (as in a checkpoint's metadata) of a run config's prompt section."""
    from vpkit.prompters import prompter_from_config

    return prompter_from_config(config.prompt).spec()


def check_checkpoint_matches(path: str | Path, metadata: dict, prompt_spec: dict, config_hash: str | None) -> None:
    """Refuse a prompt checkpoint that belongs to another run than the one it is loaded for.

    `prompt_spec` is the run's prompter spec (type, size, mode, delta, is_center, image_size); `config_hash`
    the hash its state.json records (None: not compared), written by the same vpkit as its checkpoints, so a
    vpkit upgrade that changes how configs hash does not disown them. Checkpoints without that metadata are
    not judged here."""
    recorded = metadata.get("prompt")
    if isinstance(recorded, dict):
        for key, expected in prompt_spec.items():
            if key in recorded and recorded[key] != expected:
                raise RunFolderError(
                    f"{path}: a prompt of another run (prompt {key} {recorded[key]!r} in the file, "
                    f"{expected!r} in the run's config); put this run's own checkpoint back, or retrain "
                    "with --overwrite"
                )
    recorded_hash = metadata.get("config_hash")
    if config_hash is not None and recorded_hash is not None and recorded_hash != config_hash:
        raise RunFolderError(
            f"{path}: a prompt of another run (config hash {recorded_hash} in the file, {config_hash} for the "
            "run's config); put this run's own checkpoint back, or retrain with --overwrite"
        )


def load_checkpoint_tensors(prompter, path: str | Path, state_dict: dict, run_dir: str | Path | None = None):
    """Load the tensors of the prompt checkpoint `path` into `prompter`, which was built from what the file's
    metadata (and its run `run_dir`, if any) say it holds. Tensors of another shape or type than that are refused
    naming the file and what a command-line user can do about it."""
    from vpkit.prompters import PromptStateError, load_prompt_state

    try:
        return load_prompt_state(prompter, state_dict, label=str(path))
    except PromptStateError as error:
        retrain = (f"put the run's own checkpoint back or train the run again (`vpkit train {Path(run_dir) / CONFIG_FILE}"
                   f" --out {run_dir} --overwrite`), or " if run_dir is not None else "")
        raise PromptStateError(
            f"{error.what}: the file's tensors are not the prompt its metadata describes, so it was replaced or "
            "damaged",
            f"{retrain}import the tensors as what they are (`vpkit import-prompt {path} --type TYPE --size N "
            "--image-size PX --out NEW_RUN`)",
        ) from None
