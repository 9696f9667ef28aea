"""scripts/pretrain_tiny.py's model card says where the weights were trained."""
import json

import pytest

from vpkit.models import TINY_ASSET_DIR


@pytest.fixture(scope="module")
def script(repo_script):
    return repo_script("scripts/pretrain_tiny.py")


def shipped(name: str) -> dict:
    return json.loads((TINY_ASSET_DIR / name).read_text())


def test_card_names_the_cpu_threads_of_a_report_without_a_device(script):
    report = shipped("pretraining.json")
    report.pop("device", None)  # the shipped report predates the field
    card = script.model_card(report, shipped("recorded_scores.json"), "python scripts/pretrain_tiny.py")
    assert f"on {report['threads']} CPU threads, torch {report['torch']}" in card


def test_card_names_the_gpu_and_the_command_its_device_flag(script):
    report = dict(shipped("pretraining.json"), device="NVIDIA H200")
    command = "python scripts/pretrain_tiny.py --n-refs 1200 --device cuda"
    card = script.model_card(report, shipped("recorded_scores.json"), command)
    assert "on one NVIDIA H200 (float32), torch" in card
    assert f"Command: `{command}`" in card and "CPU threads" not in card
