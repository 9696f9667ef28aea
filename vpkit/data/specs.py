"""What vpkit knows about each dataset: folder names, sizes, the paper's split sizes and label scale."""
from __future__ import annotations

from dataclasses import dataclass

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about one IQA dataset as the paper uses it."""

    key: str  # vpkit's name: kadid | koniq | agiqa
    title: str
    folder_names: tuple[str, ...]  # folder names users have under the data root
    total: int  # images in the full dataset
    paper_split: tuple[int, int, int]  # train, val, test image counts of the paper's split
    scale: float  # label = mos / scale in the paper's files (score columns per layout: vpkit.data.layouts)

    @property
    def fractions(self) -> tuple[float, float, float]:
        """Split proportions of the paper's split (used when vpkit makes a split)."""
        return tuple(n / self.total for n in self.paper_split)  # type: ignore[return-value]


SPECS: dict[str, DatasetSpec] = {
    "kadid": DatasetSpec(
        key="kadid",
        title="KADID-10k",
        folder_names=("kadid10k", "KADID-10k", "kadid-10k", "KADID10k"),
        total=10_125,
        paper_split=(8100, 1012, 1013),
        scale=5.0,
    ),
    "koniq": DatasetSpec(
        key="koniq",
        title="KonIQ-10k",
        folder_names=("koniq10k", "KonIQ-10k", "koniq-10k", "KonIQ10k"),
        total=10_073,
        paper_split=(7058, 1000, 2015),
        scale=100.0,
    ),
    "agiqa": DatasetSpec(
        key="agiqa",
        title="AGIQA-3K",
        folder_names=("agiqa3k", "AGIQA-3K", "AGIQA-3k", "agiqa-3k", "AGIQA3K"),
        total=2_982,
        paper_split=(1789, 596, 597),
        scale=5.0,
    ),
}

# vpkit's dataset names in the paper's order (its tables' columns: KADID-10k, KonIQ-10k, AGIQA-3K).
DATASETS = tuple(SPECS)

ALIASES = {
    "kadid": "kadid", "kadid10k": "kadid", "kadid-10k": "kadid",
    "koniq": "koniq", "koniq10k": "koniq", "koniq-10k": "koniq",
    "agiqa": "agiqa", "agiqa3k": "agiqa", "agiqa-3k": "agiqa",
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec for a dataset name (case-insensitive, a few spellings accepted)."""
    key = ALIASES.get(str(name).strip().lower())
    if key is None:
        raise ValueError(f"unknown dataset {name!r}; use one of: kadid, koniq, agiqa")
    return SPECS[key]
