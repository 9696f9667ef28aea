"""Reading mPLUG-Owl2 checkpoints from a local folder, in every layout the family ships.

Supported: `model.safetensors`, sharded safetensors (with `model.safetensors.index.json` or just
`*.safetensors` shards), `pytorch_model.bin`, sharded `pytorch_model-*.bin` (with or without
`pytorch_model.bin.index.json`). The model is built on the `meta` device and each shard's tensors are
assigned in place (cast to the requested dtype), so a 7B model is never materialised twice.
"""
from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from vpkit.progress import tqdm

from .mplug_owl2_config import MPLUGOwl2Config

DTYPE_NAMES = {
    "fp32": torch.float32, "float32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
}
SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"


class CheckpointError(ValueError):
    """Weights that do not fit the model their config.json describes."""


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch dtype from a dtype or one of fp32 / fp16 / bf16 (and their long names)."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPE_NAMES.values():
            raise ValueError(f"dtype {dtype} is not supported; use float32, float16 or bfloat16")
        return dtype
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPE_NAMES)}")
    return DTYPE_NAMES[dtype]


# ===================================================================== locating weight files
def weight_files(folder: Path) -> tuple[list[Path], dict[str, str] | None]:
    """(shard files in order, key -> file name map from an index if there is one)."""
    for index_name in (SAFETENSORS_INDEX, BIN_INDEX):
        index_path = folder / index_name
        if index_path.is_file():
            weight_map = _read_index(index_path)
            names = sorted(set(weight_map.values()))
            missing = [n for n in names if not (folder / n).is_file()]
            if missing:
                raise FileNotFoundError(f"{index_path} lists shard(s) not present in {folder}: "
                                        f"{_few(missing)}; copy the complete checkpoint")
            return [folder / n for n in names], weight_map
    for pattern in ("model.safetensors", "*.safetensors", "pytorch_model.bin", "pytorch_model*.bin"):
        found = sorted(folder.glob(pattern))
        if found:
            return found, None
    present = sorted(p.name for p in folder.iterdir())
    raise FileNotFoundError(
        f"{folder}: no weights found (looked for {SAFETENSORS_INDEX}, {BIN_INDEX}, model.safetensors, "
        f"*.safetensors, pytorch_model.bin, pytorch_model-*.bin); the folder holds: {_few(present)}")


def _read_index(path: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(path.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path}: not a checkpoint index (expected a JSON object with a 'weight_map' "
                              f"of key -> shard file): {err!r}") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{path}: field 'weight_map' must be a non-empty object of key -> shard file")
    return weight_map


def _keys_up_front(files: list[Path], weight_map: dict[str, str] | None) -> set[str] | None:
    """All checkpoint keys without reading tensors, where the format allows (indexes, safetensors headers)."""
    if weight_map is not None:
        return set(weight_map)
    if all(f.suffix == ".safetensors" for f in files):
        keys: set[str] = set()
        for file in files:
            with _readable(file), safe_open(str(file), framework="pt") as handle:
                keys.update(handle.keys())
        return keys
    return None


@contextmanager
def _readable(path: Path):
    """Turn the storage libraries' errors on a damaged weight file into a CheckpointError naming the file."""
    try:
        yield
    except SafetensorError as error:
        raise CheckpointError(f"{path}: damaged or truncated safetensors file ({error}); download it again") from None
    except (pickle.UnpicklingError, EOFError) as error:
        raise CheckpointError(f"{path}: damaged or truncated weight file ({type(error).__name__}); "
                              "download it again") from None


def read_shard(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, CPU tensor) pairs of one weight file; safetensors lazily, .bin memory-mapped where possible."""
    if path.suffix == ".safetensors":
        with _readable(path), safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():  # noqa: SIM118 (safe_open handles are not iterable)
                yield key, handle.get_tensor(key)
        return
    with _readable(path):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except RuntimeError as error:
                raise CheckpointError(f"{path}: damaged or truncated weight file ({str(error).splitlines()[0]}); "
                                      "download it again") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict (key -> tensor), got {type(state).__name__}")
    yield from state.items()


# ===================================================================== loading
def load_mplug_owl2(model_class, path: str | Path, *, dtype: torch.dtype | str = torch.float32,
                    device: torch.device | str = "cpu", progress: bool = True):
    """Build `model_class(config)` on meta and fill it from the folder's weights (see module docstring).

    `model_class` names the checkpoint keys it can do without (`computed_buffer_suffixes`: buffers it recomputes
    from the config) and those to skip (`ignored_checkpoint_suffixes`)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder {folder} not found (give a local folder holding config.json and "
                                "the weights)")
    config = MPLUGOwl2Config.from_json_file(folder / "config.json")
    files, weight_map = weight_files(folder)
    target_dtype = resolve_dtype(dtype)
    with torch.device("meta"):
        model = model_class(config)
    expected = {k: v for k, v in model.state_dict().items()}
    buffer_names = {name for name, _ in model.named_buffers()}
    optional = {k for k in expected if k.endswith(model_class.computed_buffer_suffixes)}

    def ignored(key: str) -> bool:
        return key.endswith(model_class.ignored_checkpoint_suffixes)

    listed = _keys_up_front(files, weight_map)
    if listed is not None:
        _check_keys({k for k in listed if not ignored(k)}, expected, optional, folder)

    loaded: set[str] = set()
    for file in tqdm(files, desc=f"loading {folder.name}", unit="shard", disable=not progress or len(files) < 2):
        part = {}
        for key, tensor in read_shard(file):
            if ignored(key):
                continue
            if key not in expected:
                raise CheckpointError(f"{file}: unexpected key {key!r} (not part of the mPLUG-Owl2 layout that "
                                      f"{folder / 'config.json'} describes)")
            if tuple(tensor.shape) != tuple(expected[key].shape):
                raise CheckpointError(
                    f"{file}: key {key!r} has shape {tuple(tensor.shape)} but {folder / 'config.json'} implies "
                    f"{tuple(expected[key].shape)}; the config does not match these weights")
            # Buffers (position tables) stay float32 and are cast where used, as the reference does.
            cast = torch.float32 if key in buffer_names else target_dtype
            part[key] = tensor.to(device=device, dtype=cast if tensor.is_floating_point() else tensor.dtype)
        model.load_state_dict(part, strict=False, assign=True)
        loaded.update(part)
        del part
    _check_keys(loaded, expected, optional, folder)
    model.reset_computed_buffers(only_missing=True)
    _require_materialised(model, folder)
    return model.eval()


def _check_keys(found: set[str], expected: dict, optional: set[str], folder: Path) -> None:
    unexpected = sorted(found - set(expected))
    if unexpected:
        raise CheckpointError(f"{folder}: {len(unexpected)} unexpected key(s) in the weights: {_few(unexpected)}; "
                              "this is not an mPLUG-Owl2 (LLaMA-2) checkpoint matching its config.json")
    missing = sorted(set(expected) - found - optional)
    if missing:
        raise CheckpointError(f"{folder}: {len(missing)} key(s) missing from the weights: {_few(missing)}; "
                              "the checkpoint is incomplete or its config.json describes another size")


def _require_materialised(model: torch.nn.Module, folder: Path) -> None:
    left = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise CheckpointError(f"{folder}: tensors left unloaded: {_few(left)}")


def _few(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")
