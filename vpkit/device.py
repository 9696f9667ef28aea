"""Where and in what precision the model runs: the device a run asks for, autocast, and the loader's uint8
batches turned into model input on that device. Shared by training, evaluation and scoring."""
from __future__ import annotations

import contextlib
import re

import torch

AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
# The devices vpkit runs on (what --device, train.device and the notebooks' `device` accept): torch knows more
# device types (xpu, mps, ...), but vpkit's precision and loader rules are written for the CPU and CUDA only.
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(?::(?P<index>\d+))?")
DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def device_problem(device) -> str | None:
    """What is wrong with a device name (None when vpkit runs on it): the one rule every entry point looks up."""
    if isinstance(device, str) and DEVICE_PATTERN.fullmatch(device):
        return None
    return f"{device!r} is not a device vpkit runs on; use {DEVICE_NAMES}"


# The paper's precision (fp16 weights, fp16 autocast) is used on CUDA only: off CUDA, float16 matmuls are slow or
# missing, so there the model runs in fp32 and without fp16 autocast. bf16, asked for, is kept (CPUs have it).
HALF_PRECISION = "fp16"


def uses_half_precision(device: str) -> bool:
    return device.startswith("cuda")


def model_dtype_on(device: str, dtype: str) -> str:
    """The model dtype that runs on `device`: fp16 becomes fp32 off CUDA; any other is kept."""
    return "fp32" if dtype == HALF_PRECISION and not uses_half_precision(device) else dtype


def amp_on(device: str, amp: str) -> str:
    """The autocast mode that runs on `device`: fp16 becomes none off CUDA; any other is kept."""
    return "none" if amp == HALF_PRECISION and not uses_half_precision(device) else amp


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
    match = DEVICE_PATTERN.fullmatch(device)
    if match is None or not device.startswith("cuda"):
        return None
    return int(match.group("index") or 0)
