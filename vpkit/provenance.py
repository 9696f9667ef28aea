"""What produced a result: the software and hardware of this process (vpkit's version and commit, Python,
torch, transformers, CUDA, cuDNN, devices). `vpkit doctor` prints it and every run folder records it."""
from __future__ import annotations

import importlib.metadata
import platform
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


def environment_facts() -> dict:
    """The software and hardware of this process, as plain JSON-ready values."""
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return {
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
