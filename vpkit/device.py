"""Where and in what precision the model runs: the device a run asks for, autocast, and the loader's uint8
batches turned into model input on that device. Shared by training, evaluation and scoring."""
from __future__ import annotations

import contextlib
import re

import torch

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# The devices vpkit runs on (what --device, train.device and the notebooks' `device` accept): torch knows more
# device types (xpu, mps, ...), but vpkit's precision and loader rules are written for the CPU and CUDA only.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def device_problem(device) -> str | None:
    """What is wrong with a device name (None when vpkit runs on it): the one rule every entry point looks up."""
    if isinstance(device, str) and DEVICE_PATTERN.fullmatch(device):
        return None
    return f"{device!r} is not a device vpkit runs on; use {DEVICE_NAMES}"


def resolve_device(device: str | None) -> str:
    """'auto' (or None) -> 'cuda' when available, else 'cpu'; anything else is checked and kept."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    problem = device_problem(device)
    if problem is not None:
        raise ValueError(f"--device {problem}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} was asked for but CUDA is not available here; use --device cpu"
        )
    return device


def autocast(device: str, amp: str):
    """Autocast context for `amp` in none|fp16|bf16 (a no-op for 'none')."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=AMP_DTYPES[amp])


def to_model_input(images_uint8: torch.Tensor, device: str) -> torch.Tensor:
    """uint8 [B,3,S,S] from a loader -> float [0,1] on `device` (converted there, 4x less to copy)."""
    return images_uint8.to(device, non_blocking=True).float().div_(255.0)


def gpu_index(device: str) -> int | None:
    """The GPU a device name asks for: N for 'cuda:N', 0 for 'cuda'; None for 'cpu' and for 'auto', which asks
    for nothing until the process that runs resolves it (resolve_device), e.g. a Slurm job on its own node."""
    if device == "cuda":
        return 0
    if device.startswith("cuda:") and device[5:].isdigit():
        return int(device[5:])
    return None
