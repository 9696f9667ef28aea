"""Datasets for vpkit: KADID-10k, KonIQ-10k and AGIQA-3K in the layouts users have, splits, image
preparation, fast loading with an optional prepared-image cache, and a synthetic KADID-style demo set
(`vpkit.data.synth`)."""
from .cache import PreparedCache, ensure_cache
from .images import METHODS, PAD_COLOUR, prepare_image
from .layouts import LAYOUTS
from .loader import EpochSampler, PreparedImageDataset, collate_batch, make_loader
from .problems import DatasetError, Problem
from .specs import SPECS, SPLIT_NAMES, DatasetSpec, dataset_spec
from .splits import SPLIT_KINDS, content_overlap, content_split, random_split, split_sizes
from .table import IQATable, build_table, load_table
from .workers import available_cpus, default_num_workers

__all__ = [
    "LAYOUTS", "METHODS", "PAD_COLOUR", "SPECS", "SPLIT_KINDS", "SPLIT_NAMES",
    "DatasetError", "DatasetSpec", "EpochSampler", "IQATable", "PreparedCache", "PreparedImageDataset", "Problem",
    "available_cpus", "build_table", "collate_batch", "content_overlap", "content_split", "dataset_spec",
    "default_num_workers", "ensure_cache", "load_table", "make_loader", "prepare_image", "random_split",
    "split_sizes",
]
