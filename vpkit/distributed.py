"""Data-parallel training of one experiment over several processes (one per GPU), started by torchrun.

    torchrun --nproc_per_node 4 -m vpkit train 4 --model M --data-root D

Each process (rank) holds the whole frozen model and the same prompt. Every global batch of the experiment
(train.batch_size, the paper's 32) is split over the ranks (vpkit.data.EpochSampler keeps positions
p % world_size == rank of the one-process order), each rank back-propagates its share, and the prompt's
gradient is averaged over the ranks before the SGD step, so every rank takes the same step one process
would take. Validation and test scores are gathered, so every image is scored exactly once. Only rank 0
(the writer) writes the run folder; the others wait at a barrier where they read what it wrote.

A rank that dies ends the job: torchrun stops the other ranks when one exits with an error and reports
which rank failed; a rank that hangs instead (a stuck GPU) makes the others' next collective fail after
PROCESS_GROUP_TIMEOUT. The run folder keeps its last finished epoch (written before the barrier that
follows it), and `--resume` continues it on any number of ranks.

With one process (no torchrun, or --nproc_per_node 1) every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
import torch
import torch.distributed as dist

# How long a collective waits for a silent rank before the job fails (a dead rank fails it at once).
PROCESS_GROUP_TIMEOUT = timedelta(minutes=int(os.environ.get("VPKIT_DIST_TIMEOUT_MIN", "30")))


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_writer(self) -> bool:
        return self.rank == 0


def world_from_env() -> World:
    """The rank, world size and local rank torchrun put in the environment (one process when unset)."""
    try:
        return World(
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")),
        )
    except ValueError as error:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers as torchrun sets them ({error})") from None


def launched_by_torchrun() -> bool:
    """True when this process is one of several started by torchrun and has no process group yet."""
    return world_from_env().size > 1 and not dist.is_initialized()


def world() -> World:
    """The current world: from the process group when one is set up, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), world_from_env().local_rank)
    return World()


def is_writer() -> bool:
    """Only rank 0 writes the run folder."""
    return world().is_writer


@contextlib.contextmanager
def process_group(device: str):
    """Join torchrun's process group (nccl on CUDA, gloo on CPU) for the duration; pins a CUDA rank to its
    local GPU. Yields the device this rank trains on."""
    env = world_from_env()
    device = local_device(device, env)
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    # Bound to its GPU, an NCCL group knows where a barrier and the object collectives put their tensors.
    bound = torch.device(device) if backend == "nccl" else None
    dist.init_process_group(backend, timeout=PROCESS_GROUP_TIMEOUT, device_id=bound)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def local_device(device: str, env: World | None = None) -> str:
    """'cuda' -> this rank's GPU (cuda:LOCAL_RANK) when several processes share a node; else `device`."""
    env = env or world_from_env()
    if device == "cuda" and env.size > 1:
        return f"cuda:{env.local_rank}"
    return device


def collective_device() -> torch.device:
    """The device a collective's tensors must be on: NCCL takes only CUDA tensors (this rank's GPU, made
    current by process_group), gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    if world().size > 1:
        dist.barrier()


def run_on_writer(function, *args, **kwargs):
    """Run `function` on rank 0 only and give every rank its result (or raise its error on every rank)."""
    current = world()
    if current.size == 1:
        return function(*args, **kwargs)
    outcome = [None]
    if current.is_writer:
        try:
            outcome[0] = ("ok", function(*args, **kwargs))
        except Exception as error:  # noqa: BLE001 - re-raised on every rank below
            outcome[0] = ("error", error)
    dist.broadcast_object_list(outcome, src=0, device=collective_device())
    kind, value = outcome[0]
    if kind == "error":
        raise value
    return value


@contextlib.contextmanager
def writer_first():
    """Rank 0 runs the block first (e.g. builds the image cache), then the others, reading what it made.
    An error on rank 0 is raised on every rank (not left as a broken connection for the others)."""
    current = world()
    if current.size == 1:
        yield
        return
    if current.is_writer:
        try:
            yield
        except Exception as error:
            dist.broadcast_object_list([error], src=0, device=collective_device())
            raise
        dist.broadcast_object_list([None], src=0, device=collective_device())
        return
    outcome = [None]
    dist.broadcast_object_list(outcome, src=0, device=collective_device())
    if outcome[0] is not None:
        raise outcome[0]
    yield


# ----------------------------------------------------------------------------- the global batch


def check_global_batch(batch_size: int, n_images: int | None = None) -> None:
    """Refuse a batch the ranks cannot share: each needs batch_size / world_size images of every batch
    (and, given the train split's `n_images`, at least one image of its last batch)."""
    size = world().size
    if size == 1:
        return
    if batch_size % size:
        raise ValueError(
            f"train.batch_size {batch_size} cannot be split over {size} processes; use a batch size "
            f"divisible by {size} (the global batch is batch_size = processes x per-process batch)"
        )
    last = 0 if n_images is None else n_images % batch_size
    if 0 < last < size:
        raise ValueError(
            f"the train split's {n_images} images leave a last batch of {last} image(s), fewer than the "
            f"{size} processes; change --limit or train.batch_size, or use fewer processes"
        )


def per_rank_batch(batch_size: int) -> int:
    return batch_size // world().size


def loss_for_global_batch(loss: torch.Tensor, loader, step: int, n_local: int) -> torch.Tensor:
    """This rank's mean loss, weighted so that averaging the ranks' gradients gives the gradient of the
    mean over the whole global batch (all shares are equal except in an epoch's last, smaller batch)."""
    size = world().size
    if size == 1:
        return loss
    global_batch = loader.batch_size * size
    n_global = min(global_batch, loader.sampler.length - (step - 1) * global_batch)
    return loss * (n_local * size / n_global)


def average_gradients(parameters) -> None:
    """All-reduce the prompt's gradients to their mean over ranks (the frozen model has none). They lie on
    the device this rank trains on, which is the one its group's backend takes (see process_group)."""
    size = world().size
    if size == 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad.div_(size)


def sum_over_ranks(*values: float) -> tuple[float, ...]:
    """Sum plain numbers (an epoch's loss total and image count) over the ranks."""
    if world().size == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=collective_device())
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return tuple(total.tolist())


# ----------------------------------------------------------------------------- predictions


def gather_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    """Every rank's predictions of its share, back in the one-process order (positions p % size == rank)."""
    current = world()
    if current.size == 1:
        return frame
    shards: list = [None] * current.size
    dist.all_gather_object(shards, frame)  # torch moves the pickled frames to collective_device() itself
    keyed = [
        shard.assign(_position=[rank + current.size * j for j in range(len(shard))])
        for rank, shard in enumerate(shards)
    ]
    merged = pd.concat(keyed, ignore_index=True).sort_values("_position", kind="stable")
    return merged.drop(columns="_position").reset_index(drop=True)
