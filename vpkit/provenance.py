"""What produced a result: the software and hardware of this process (vpkit's version and commit, Python,
torch, transformers, CUDA, cuDNN, devices). `vpkit doctor` prints it and every run folder records it; the doctor
adds this machine's state (cache folders and their free space, which optional extras are installed)."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path

import torch

import vpkit

PACKAGE_DIR = Path(vpkit.__file__).resolve().parent


def git_state(folder: Path = PACKAGE_DIR) -> dict | None:
    """{'commit', 'dirty'} of the checkout vpkit is imported from; None for an installed package (no git work
    tree around it) or where git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(folder), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if not (top / "vpkit" / "__init__.py").is_file():  # vpkit installed inside some other repository
            return None
        commit = git("rev-parse", "HEAD")
        # untracked files count: a new module changes what runs as much as an edited one
        dirty = bool(git("status", "--porcelain", "--", str(top / "vpkit")))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def devices() -> list[dict]:
    """The CUDA devices this process sees (name, total memory in GiB, compute capability); [] without CUDA."""
    if not torch.cuda.is_available():
        return []
    found = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        found.append({
            "index": index,
            "name": props.name,
            "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}",
        })
    return found


# The extras of pyproject.toml a user may be missing (dev only runs the tests).
CHECKED_EXTRAS = ("notebooks", "synth", "cluster")


def extras_installed(extras: tuple[str, ...] = CHECKED_EXTRAS) -> dict:
    """{extra: {package: installed version or None}} for vpkit's optional extras, from vpkit's own package
    metadata; {extra: None} where vpkit is not installed (run from a source folder without `pip install -e`)."""
    try:
        requirements = importlib.metadata.requires("vpkit") or []
    except importlib.metadata.PackageNotFoundError:
        return dict.fromkeys(extras)
    found: dict = {extra: {} for extra in extras}
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if extra and extra.group(1) in found:
            package = re.match(r"[A-Za-z0-9._-]+", name.strip()).group(0)
            found[extra.group(1)][package] = package_version(package)
    return found


def cache_folders() -> dict:
    """{what: {path, exists, free_gib}} for the folders vpkit's runs fill: torch.compile's cache and the Hugging
    Face cache (model downloads). Free space is that of the file system the folder is (or would be) on."""
    from huggingface_hub import constants

    from vpkit.compile_cache import default_compile_cache_dir

    folders = {"torch.compile cache": default_compile_cache_dir(), "Hugging Face cache": Path(constants.HF_HUB_CACHE)}
    return {name: _folder_state(path) for name, path in folders.items()}


def _folder_state(path: Path) -> dict:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the folder is made on first use; its file system is the nearest parent's
    try:
        free = round(shutil.disk_usage(existing).free / 2**30, 1)
    except OSError:
        free = None
    return {"path": str(path), "exists": path.is_dir(), "writable": os.access(existing, os.W_OK),
            "free_gib": free}


def environment_facts(machine: bool = False) -> dict:
    """The software and hardware of this process, as plain JSON-ready values; with `machine`, also this machine's
    cache folders (free space) and installed extras, which a bug report needs and a run folder does not."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    facts = {
        "vpkit": vpkit.__version__,
        "git": git_state(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "torch": torch.__version__,
        "transformers": package_version("transformers"),
        "huggingface_hub": package_version("huggingface_hub"),
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "cuda_available": torch.cuda.is_available(),
        "devices": devices(),
    }
    if machine:
        facts.update(caches=cache_folders(), extras=extras_installed())
    return facts
