"""Datasets for vpkit: KADID-10k, KonIQ-10k and AGIQA-3K in the layouts users have, splits, image
preparation, fast loading with an optional prepared-image cache, and a synthetic KADID-style demo set
(`vpkit.data.synth`).

Names are imported on first use, so `vpkit data check` and `vpkit data synth` start without torch."""
from __future__ import annotations

import importlib

_EXPORTS = {
    "cache": ("PreparedCache", "ensure_cache"),
    "images": ("METHODS", "PAD_COLOUR", "prepare_image"),
    "layouts": ("LAYOUTS",),
    "loader": ("EpochSampler", "PreparedImageDataset", "collate_batch", "make_loader"),
    "problems": ("DatasetError", "Problem"),
    "specs": ("SPECS", "SPLIT_NAMES", "DatasetSpec", "dataset_spec"),
    "splits": ("SPLIT_KINDS", "content_overlap", "content_split", "random_split", "split_sizes"),
    "table": ("IQATable", "build_table", "load_table"),
    "workers": ("available_cpus", "default_num_workers"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = [  # the same names as _EXPORTS, spelled out for tools that read __all__
    "LAYOUTS", "METHODS", "PAD_COLOUR", "SPECS", "SPLIT_KINDS", "SPLIT_NAMES",
    "DatasetError", "DatasetSpec", "EpochSampler", "IQATable", "PreparedCache", "PreparedImageDataset", "Problem",
    "available_cpus", "build_table", "collate_batch", "content_overlap", "content_split", "dataset_spec",
    "default_num_workers", "ensure_cache", "load_table", "make_loader", "prepare_image", "random_split",
    "split_sizes",
]


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'vpkit.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
