"""Shared fixtures: the golden conformance vectors live beside the project, in ../shared/golden."""
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_ROOT = REPO_ROOT.parent / "shared" / "golden"


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    path = GOLDEN_ROOT / "mplug_owl2_tiny"
    if not (path / "vectors.safetensors").is_file():
        pytest.skip(f"conformance vectors not found at {path} (they ship beside the project, not inside it)")
    return path
