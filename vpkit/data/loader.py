"""`make_loader`: an IQATable split -> DataLoader of {"image": uint8 [B,3,S,S], "label": float32 [B],
"name": [str]}. Worker processes, pinned memory on CUDA, persistent workers, optional prepared-image cache."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .cache import PreparedCache, ensure_cache
from .images import METHODS, prepare_image
from .table import IQATable
from .workers import default_num_workers


class PreparedImageDataset(Dataset):
    """Items are keyed by (index, flip): the sampler decides flips, so they don't depend on workers."""

    def __init__(self, paths: list[str], labels: np.ndarray, names: list[str], size: int, method: str,
                 cache: PreparedCache | None = None, cache_rows: np.ndarray | None = None):
        self.paths, self.names, self.size, self.method = paths, names, size, method
        self.labels = np.asarray(labels, dtype=np.float32)
        self.cache, self.cache_rows = cache, cache_rows
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_array"] = None  # each worker maps the cache itself; never pickle the pixels
        return state

    def __getitem__(self, key: tuple[int, bool] | int) -> tuple[torch.Tensor, float, str]:
        index, flip = key if isinstance(key, tuple) else (key, False)
        if self.cache is not None:
            if self._array is None:
                self._array = self.cache.open()
            pixels = self._array[self.cache_rows[index]]
        else:
            pixels = prepare_image(self.paths[index], self.size, self.method)
        if flip:
            pixels = pixels[:, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
        return image, float(self.labels[index]), self.names[index]


class EpochSampler(Sampler):
    """Yields (index, flip) pairs. Order (shuffled when training) and flips come from (seed, epoch), so
    runs repeat exactly; the epoch advances on every pass (or is set with `set_epoch` when resuming).

    With `world_size` > 1 (data-parallel training) every rank draws the same (seed, epoch) order and keeps
    the positions p with p % world_size == rank. A rank's k-th batch of batch_size / world_size images is
    then its share of the k-th global batch of one process (vpkit.distributed relies on this rule)."""

    def __init__(self, length: int, shuffle: bool, flip: bool, seed: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of {world_size} processes")
        self.length, self.shuffle, self.flip, self.seed = length, shuffle, flip, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(self.length) if self.shuffle else np.arange(self.length)
        flips = rng.random(self.length) < 0.5 if self.flip else np.zeros(self.length, dtype=bool)
        shard = slice(self.rank, None, self.world_size)  # the whole epoch when world_size is 1
        return iter(zip(order[shard].tolist(), flips[shard].tolist()))


def collate_batch(items: list[tuple[torch.Tensor, float, str]]) -> dict:
    """Stack samples into the batch dict the trainer expects."""
    return {
        "image": torch.stack([image for image, _, _ in items]),
        "label": torch.tensor([label for _, label, _ in items], dtype=torch.float32),
        "name": [name for _, _, name in items],
    }


def make_loader(table: IQATable, split: str, image_size: int, batch_size: int, train: bool,
                method: str = "resize_crop", cache_dir: str | Path | None = None, num_workers: int | None = None,
                seed: int = 42, pin_memory: bool | None = None, drop_last: bool = False,
                progress: bool = True, rank: int = 0, world_size: int = 1) -> DataLoader:
    """Batches of one split (`train`, `val`, `test` or `all`). `train` shuffles and flips at random
    (p=0.5); otherwise the order is the table's and nothing is flipped. `cache_dir` turns on the
    prepared-image cache (built once for the whole table). num_workers=None picks from the CPU count.
    `rank` of `world_size` gives that rank's share of each epoch (EpochSampler); batch_size is per rank."""
    if method not in METHODS:
        raise ValueError(f"unknown preparation method {method!r}; use one of {', '.join(METHODS)}")
    rows = table.rows(split)
    if len(rows) == 0:
        raise ValueError(f"{table.dataset} split {split!r} has no images ({table.split_source})")
    cache, cache_rows = None, None
    workers = default_num_workers() if num_workers is None else int(num_workers)
    if cache_dir is not None:
        cache = ensure_cache(table, image_size, method, cache_dir, num_workers=workers, progress=progress)
        cache_rows = np.array([cache.row_of[name] for name in rows["name"]], dtype=np.int64)
    dataset = PreparedImageDataset(rows["path"].tolist(), rows["label"].to_numpy(), rows["name"].tolist(),
                                   image_size, method, cache, cache_rows)
    sampler = EpochSampler(len(dataset), shuffle=train, flip=train, seed=seed, rank=rank, world_size=world_size)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, collate_fn=collate_batch,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, drop_last=drop_last,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
    )
