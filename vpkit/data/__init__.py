"""Datasets for vpkit: KADID-10k, KonIQ-10k and AGIQA-3K in the layouts users have, splits, image
preparation, fast loading with an optional prepared-image cache, and a synthetic KADID-style demo set
(`vpkit.data.synth`).

Names are imported on first use, so `vpkit data check` and `vpkit data synth` start without torch."""
from __future__ import annotations

from vpkit.lazy_exports import lazy_exports

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
__all__ = [  # the same names as _EXPORTS, spelled out for tools that read __all__
    "LAYOUTS", "METHODS", "PAD_COLOUR", "SPECS", "SPLIT_KINDS", "SPLIT_NAMES",
    "DatasetError", "DatasetSpec", "EpochSampler", "IQATable", "PreparedCache", "PreparedImageDataset", "Problem",
    "available_cpus", "build_table", "collate_batch", "content_overlap", "content_split", "dataset_spec",
    "default_num_workers", "ensure_cache", "load_table", "make_loader", "prepare_image", "random_split",
    "split_sizes",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
