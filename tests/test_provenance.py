"""The facts of this process that every run folder and `vpkit doctor` record."""
from __future__ import annotations

import json
import subprocess

import pytest
from _messages import raises_one_line

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


# ----------------------------------------------------------------------------- the model and the data


def test_a_model_folder_is_fingerprinted_by_its_config_index_and_weight_sizes(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "mplug_owl2"}')
    (folder / "model.safetensors.index.json").write_text('{"weight_map": {"a": "model-1.safetensors"}}')
    (folder / "model-1.safetensors").write_bytes(b"x" * 10)
    (folder / "README.md").write_text("not a weight")
    source = provenance.model_source(folder)
    assert source["kind"] == "folder" and source["path"] == str(folder.resolve())
    assert len(source["fingerprint"]) == 16
    (folder / "README.md").write_text("edited")
    assert provenance.model_source(folder) == source  # only what makes the weights counts
    for change in (lambda: (folder / "model-1.safetensors").write_bytes(b"x" * 11),
                   lambda: (folder / "config.json").write_text('{"model_type": "llava"}'),
                   lambda: (folder / "model.safetensors.index.json").write_text('{"weight_map": {}}')):
        before = provenance.model_source(folder)["fingerprint"]
        change()
        assert provenance.model_source(folder)["fingerprint"] != before


def test_presets_and_hub_records_name_their_source(tmp_path):
    tiny = provenance.model_source("tiny")
    assert tiny["kind"] == "preset" and tiny["name"] == "tiny" and len(tiny["fingerprint"]) == 16
    assert provenance.model_source("tiny-random") == {"kind": "preset", "name": "tiny-random", "fingerprint": None}
    hub = {"repo_id": "MAGAer13/mplug-owl2-llama2-7b", "revision": "main", "commit": "a" * 40}
    (tmp_path / "config.json").write_text("{}")
    source = provenance.model_source(tmp_path, hub=hub)
    assert source == {"kind": "hub", **hub, "path": str(tmp_path), "fingerprint": source["fingerprint"]}
    assert provenance.model_label(source) == f"MAGAer13/mplug-owl2-llama2-7b @ {'a' * 40}"
    assert provenance.model_source("nowhere/at-all")["kind"] == "name"


def test_the_data_source_names_the_downloaded_archives_sha256(tmp_path):
    assert provenance.data_source(tmp_path, "kadid") == {"dataset": "kadid", "root": str(tmp_path.resolve()),
                                                         "archives": None}
    (tmp_path / provenance.DOWNLOAD_RECORD).write_text(json.dumps(
        {"kadid10k": {"source": "hub:x/y kadid10k.tgz", "sha256": "ab" * 32}, "split_kadid10k.csv": {"sha256": "cd"}}))
    archives = provenance.data_source(tmp_path, "kadid")["archives"]
    assert archives == [{"name": "kadid10k", "source": "hub:x/y kadid10k.tgz", "sha256": "ab" * 32},
                        {"name": "split_kadid10k.csv", "sha256": "cd"}]
    (tmp_path / provenance.DOWNLOAD_RECORD).write_text("{broken")
    assert "unreadable" in provenance.data_source(tmp_path)["archives"][0]["problem"]


# ----------------------------------------------------------------------------- the record


def session():
    return provenance.session("cpu", provenance.model_source("tiny-random"), provenance.data_source(None))


@pytest.mark.parametrize("raised, outcome", [(None, "finished"), (KeyboardInterrupt, "stopped"),
                                             (ValueError, "failed (ValueError)")])
def test_a_recording_says_when_and_how_it_ended(tmp_path, raised, outcome):
    with provenance.recording(tmp_path, "training", session()) as entry:
        started = provenance.read_record(tmp_path)
        assert started["sessions"][0]["ended"] is None  # a killed process leaves its start behind
    if raised:  # a resumed run's process that ends otherwise
        with pytest.raises(raised), provenance.recording(tmp_path, "training", session(), append=True):
            raise raised()
    record = provenance.read_record(tmp_path)
    assert record["format_version"] == provenance.FORMAT_VERSION
    assert [s["outcome"] for s in record["sessions"]] == ["finished"] + ([outcome] if raised else [])
    assert record["sessions"][0]["started"] == entry["started"] <= record["sessions"][0]["ended"]


def test_a_damaged_record_is_named(tmp_path):
    assert provenance.read_record(tmp_path) is None
    (tmp_path / provenance.RECORD_FILE).write_text("[1, 2]")
    with raises_one_line(provenance.ProvenanceError, names=(tmp_path / provenance.RECORD_FILE,), fix="--overwrite"):
        provenance.read_record(tmp_path)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_a_session_on_cuda_names_the_gpu_it_used():
    import torch

    entry = provenance.session("cuda", provenance.model_source("tiny-random"), provenance.data_source(None))
    assert entry["device_name"] == torch.cuda.get_device_name() and entry["environment"]["devices"]


def test_machine_facts_add_the_cache_folders_with_free_space_and_the_extras(monkeypatch, tmp_path):
    (tmp_path / "hf").mkdir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "compile" / "cache"))  # not made yet
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))  # set after huggingface_hub was imported: still honoured
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
