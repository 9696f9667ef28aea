"""How many loader worker processes this machine can spare."""
from __future__ import annotations

import os

MAX_WORKERS = 8  # past this, PIL decoding of one dataset no longer scales on the machines we target


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and container CPU sets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_num_workers() -> int:
    """One core is left for the training loop: 2 cores -> 1 worker, 16 cores -> 8 workers."""
    cpus = available_cpus()
    return 0 if cpus <= 1 else min(cpus - 1, MAX_WORKERS)
