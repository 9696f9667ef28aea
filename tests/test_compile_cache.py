"""torch.compile's caches live in one lasting folder (vpkit.compile_cache), so a fresh process loads what an
earlier one compiled instead of compiling again (the warm-up of `reproduce`'s later experiments)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _messages import raises_one_line

from vpkit.compile_cache import TORCH_CACHE_VARIABLE, default_compile_cache_dir, use_compile_cache
from vpkit.evaluate import PromptedScorer

REPO = Path(__file__).resolve().parents[1]

# A fresh process compiling a matmul forward and backward with inductor (extern mm kernels only, so no C++
# compiler run: seconds), printing torch's cache counters.
CHILD = """
import json, sys
import torch
from torch._dynamo.utils import counters
from vpkit.compile_cache import use_compile_cache
use_compile_cache(sys.argv[1])
weight = torch.randn(8, 8)
compiled = torch.compile(lambda x: x @ weight)
compiled(torch.randn(4, 8, requires_grad=True)).backward(torch.ones(4, 8))
print(json.dumps({**counters["inductor"], **counters["aot_autograd"]}))
"""


def compile_in_fresh_process(folder: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop(TORCH_CACHE_VARIABLE, None)
    done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"torch.compile cache: {folder.resolve()}"), done.stdout  # said once, in the log
    return json.loads(lines[-1])


@pytest.fixture
def unset_cache_variable(monkeypatch):
    """TORCHINDUCTOR_CACHE_DIR absent during the test and as it was afterwards, even when the code under test sets
    it (setenv first, so that monkeypatch records the original state)."""
    monkeypatch.setenv(TORCH_CACHE_VARIABLE, "unset-by-the-test")
    monkeypatch.delenv(TORCH_CACHE_VARIABLE)


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    folder = tmp_path / "compile-cache"
    cold = compile_in_fresh_process(folder)
    assert cold.get("fxgraph_cache_miss", 0) > 0 and cold.get("fxgraph_cache_hit", 0) == 0
    assert (folder / "fxgraph").is_dir() and any((folder / "fxgraph").rglob("*"))
    assert (folder / "aotautograd").is_dir()
    warm = compile_in_fresh_process(folder)
    assert warm.get("fxgraph_cache_hit", 0) == cold["fxgraph_cache_miss"]  # forward and backward graphs
    assert warm.get("fxgraph_cache_miss", 0) == 0
    assert warm.get("autograd_cache_hit", 0) == 1


def test_the_default_folder_is_the_users_cache_unless_torchs_variable_is_set(unset_cache_variable, monkeypatch,
                                                                             tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_compile_cache_dir() == tmp_path / "xdg" / "vpkit" / "torch-compile"
    monkeypatch.setenv(TORCH_CACHE_VARIABLE, str(tmp_path / "mine"))
    assert default_compile_cache_dir() == tmp_path / "mine"


def test_a_compiled_prompted_scorer_points_torch_at_the_folder(unset_cache_variable, tmp_path):
    PromptedScorer(torch.nn.Identity(), compile_model=True, compile_cache_dir=str(tmp_path / "cc"))
    assert os.environ[TORCH_CACHE_VARIABLE] == str((tmp_path / "cc").resolve())
    assert (tmp_path / "cc").is_dir()


def test_an_unusable_folder_is_one_clear_error(unset_cache_variable, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with raises_one_line(ValueError, names=("train.compile_cache_dir", blocker / "cc")):
        use_compile_cache(blocker / "cc")
    assert TORCH_CACHE_VARIABLE not in os.environ
