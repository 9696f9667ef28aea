"""scripts/pretrain_tiny.py's model card says where the weights were trained."""
import importlib.util
import json
from pathlib import Path

from vpkit.models import TINY_ASSET_DIR

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "pretrain_tiny.py"


def load_script():
    spec = importlib.util.spec_from_file_location("pretrain_tiny_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shipped(name: str) -> dict:
    return json.loads((TINY_ASSET_DIR / name).read_text())


def test_card_names_the_cpu_threads_of_a_report_without_a_device():
    script = load_script()
    report = shipped("pretraining.json")
    report.pop("device", None)  # the shipped report predates the field
    card = script.model_card(report, shipped("recorded_scores.json"), "python scripts/pretrain_tiny.py")
    assert f"on {report['threads']} CPU threads, torch {report['torch']}" in card


def test_card_names_the_gpu_and_the_command_its_device_flag():
    script = load_script()
    report = dict(shipped("pretraining.json"), device="NVIDIA H200")
    command = "python scripts/pretrain_tiny.py --n-refs 1200 --device cuda"
    card = script.model_card(report, shipped("recorded_scores.json"), command)
    assert "on one NVIDIA H200 (float32), torch" in card
    assert f"Command: `{command}`" in card and "CPU threads" not in card
