"""The facts of this process that every run folder and `vpkit doctor` record."""
from __future__ import annotations

import json
import subprocess

import pytest

from vpkit import provenance


def test_environment_facts_are_json_and_name_the_versions():
    facts = json.loads(json.dumps(provenance.environment_facts()))
    import torch

    assert facts["torch"] == torch.__version__
    assert facts["transformers"] == provenance.package_version("transformers")
    assert facts["cuda_available"] == torch.cuda.is_available()
    assert len(facts["devices"]) == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def _git(folder, *args):
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    if subprocess.run(["git", "--version"], check=False, capture_output=True).returncode:
        pytest.skip("git is not installed")
    (tmp_path / "vpkit").mkdir()
    (tmp_path / "vpkit" / "__init__.py").write_text("")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    return tmp_path


def test_git_state_reports_commit_and_uncommitted_changes(checkout):
    clean = provenance.git_state(checkout / "vpkit")
    assert len(clean["commit"]) == 40 and clean["dirty"] is False
    (checkout / "vpkit" / "new_module.py").write_text("x = 1\n")
    assert provenance.git_state(checkout / "vpkit") == {"commit": clean["commit"], "dirty": True}


def test_git_state_is_none_outside_a_vpkit_checkout(tmp_path):
    assert provenance.git_state(tmp_path) is None
