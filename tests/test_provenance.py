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


def test_machine_facts_add_the_cache_folders_with_free_space_and_the_extras(monkeypatch, tmp_path):
    from huggingface_hub import constants

    (tmp_path / "hf").mkdir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "compile" / "cache"))  # not made yet
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(provenance.importlib.metadata, "requires", lambda name: [
        "torch>=2.4", 'jupyterlab>=4.0; extra == "notebooks"', 'surely-not-installed-pkg>=1; extra == "notebooks"',
        'submitit>=1.5; extra == "cluster"', 'pytest>=8; extra == "dev"'])
    facts = json.loads(json.dumps(provenance.environment_facts(machine=True)))
    compile_cache, hub = facts["caches"]["torch.compile cache"], facts["caches"]["Hugging Face cache"]
    assert compile_cache["path"] == str(tmp_path / "compile" / "cache") and compile_cache["exists"] is False
    assert hub == {**hub, "path": str(tmp_path / "hf"), "exists": True, "writable": True}
    assert compile_cache["free_gib"] > 0 and hub["free_gib"] > 0  # the nearest existing folder's file system
    extras = facts["extras"]
    assert set(extras) == set(provenance.CHECKED_EXTRAS)  # dev is not a user's extra
    assert extras["notebooks"]["surely-not-installed-pkg"] is None
    assert extras["notebooks"]["jupyterlab"] == provenance.package_version("jupyterlab")
    assert "caches" not in provenance.environment_facts()  # a run folder records no machine state


def test_extras_are_unknown_when_vpkit_is_not_installed(monkeypatch):
    def not_installed(name):
        raise provenance.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(provenance.importlib.metadata, "requires", not_installed)
    assert provenance.extras_installed() == dict.fromkeys(provenance.CHECKED_EXTRAS)
