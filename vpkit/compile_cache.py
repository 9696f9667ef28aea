"""One on-disk folder for what torch.compile compiles, shared by every run of a machine (or of a cluster).

torch's inductor keeps compiled graphs in its FX-graph cache and the traced forward/backward pair in its
AOTAutograd cache, both on by default and both under TORCHINDUCTOR_CACHE_DIR (Triton's kernels too, unless
TRITON_CACHE_DIR says otherwise). Its default folder is /tmp/torchinductor_<user>: per node, and cleared with
/tmp. vpkit points it at a lasting folder instead, so that each experiment of `vpkit reproduce` or
`vpkit sweep` (one process each) loads the graphs an earlier one compiled rather than compiling them again.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

TORCH_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


def default_compile_cache_dir() -> Path:
    """$TORCHINDUCTOR_CACHE_DIR when the user set it, else $XDG_CACHE_HOME/vpkit/torch-compile (~/.cache/...)."""
    if os.environ.get(TORCH_CACHE_VARIABLE):
        return Path(os.environ[TORCH_CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vpkit" / "torch-compile"


def use_compile_cache(folder: str | Path | None = None) -> Path:
    """Make torch.compile read and write its caches in `folder` (None: `default_compile_cache_dir()`).

    Call it before the process's first compile: inductor reads the folder from TORCHINDUCTOR_CACHE_DIR whenever
    it looks something up, so setting that variable is the whole change. Returns the folder (created).
    """
    path = Path(folder).expanduser() if folder else default_compile_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(
            f"train.compile_cache_dir = {str(path)!r} cannot be created ({error.strerror}); give a writable folder "
            "(--compile-cache-dir or train.compile_cache_dir)"
        ) from None
    path = path.resolve()
    os.environ[TORCH_CACHE_VARIABLE] = str(path)
    _report(str(path))
    return path


@functools.cache
def _report(folder: str) -> None:
    """One log line per folder and process, saying whether torch will actually use the caches."""
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    states = {
        "FX graph cache": inductor_config.fx_graph_cache,
        "AOTAutograd cache": functorch_config.enable_autograd_cache,
    }
    listed = ", ".join(f"{name} {'on' if state else 'OFF'}" for name, state in states.items())
    print(f"torch.compile cache: {folder} ({listed})")
