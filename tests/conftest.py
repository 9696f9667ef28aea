"""Shared fixtures; the conformance vectors ship with the tests, in tests/fixtures/ (each set with its README)."""
import os
from pathlib import Path

import pytest

# Under pytest-xdist (pyproject's addopts: two workers) each worker gets one torch/OpenMP thread unless the caller
# chose: two workers with two spinning threads each on two cores ran some steps 10x slower. Set before anything
# imports torch (this file is imported first); subprocesses (notebook kernels, torchrun ranks) inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# Nothing in the tests contacts the real Hugging Face Hub: offline, and an endpoint where nothing listens, unless a
# test's stand-in Hub (tests/hub_standin.py, the `served` fixture of tests/test_hub.py) sets its own. Set before
# anything imports huggingface_hub, which reads them once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES_ROOT = REPO_ROOT / "tests" / "fixtures"


@pytest.fixture(scope="session")
def repo_script():
    """`repo_script("benchmarks/bench_train.py")`: a script of the repository (scripts/, benchmarks/), which is
    no package module, imported from its path (once per test session)."""
    import importlib.util

    loaded = {}

    def load(relative_path: str):
        if relative_path not in loaded:
            spec = importlib.util.spec_from_file_location(Path(relative_path).stem, REPO_ROOT / relative_path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            loaded[relative_path] = module
        return loaded[relative_path]

    return load


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The mPLUG-Owl2 conformance vectors (tests/fixtures/mplug_owl2_tiny/README.md says what made them)."""
    return FIXTURES_ROOT / "mplug_owl2_tiny"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A small generated KADID-style set, shared by the training and CLI tests: 10 references x 2 distortions x
    3 levels (whole references per split: 48 train, 6 val, 6 test images)."""
    from vpkit.data.synth import COLOUR_DEMO_DISTORTIONS, generate

    # The demo's first two types; tests/test_distributed.py's tolerances do not depend on which (it also passes
    # with lens blur and multiplicative noise).
    root = tmp_path_factory.mktemp("synth")
    generate(root, n_refs=10, distortions=COLOUR_DEMO_DISTORTIONS[:2], levels=(1, 3, 5), size=(64, 48), progress=False,
             workers=0, include_photos=False)
    return root


@pytest.fixture(autouse=True)
def _torch_compile_cache_variable_restored():
    """A compiled run points TORCHINDUCTOR_CACHE_DIR at its cache folder for the rest of its process
    (vpkit.compile_cache; torch itself sets it to its default on first use, also from its compile threads, so
    no test can assert it unset); in the test process that would leak into later tests, so put it back."""
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    yield
    if before is None:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    else:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = before
