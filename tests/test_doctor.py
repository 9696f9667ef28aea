"""`vpkit doctor`: the environment for a bug report, and every training path of a device checked on the tiny
model against the CPU float32 run (the CUDA paths are listed here and run by the CUDA-only test)."""
from __future__ import annotations

import json

import pytest
import torch

from vpkit import doctor, train
from vpkit.cli import main


def test_quick_cpu_doctor_checks_every_cpu_path_and_reports_json(capsys):
    assert main(["doctor", "--device", "cpu", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # stdout is the JSON object alone
    assert report["ok"] is True and report["device"] == "cpu"
    names = [path["name"] for path in report["paths"]]
    assert names == [spec.name for spec in doctor.planned_paths("cpu", quick=True)]
    assert names[0].startswith("defaults (fp32 weights, no autocast, SGD, clipping at 1,")
    assert {"bf16 weights, bf16 autocast", "fp16 weights, fp16 autocast, GradScaler (a GPU run's default, on the CPU)",
            "checkpointing full", "checkpointing selective", "checkpointing mixed",
            "resume after step 1 from the run-folder files"} <= set(names)
    for path in report["paths"]:
        assert path["ok"] and path["update_difference"] <= path["update_tolerance"], path
        assert path["score_difference"] <= path["score_tolerance"], path
    fp32 = [p for p in report["paths"] if p["precision"] == "fp32"]
    assert all(p["update_difference"] == 0 for p in fp32)  # checkpointing and resume change no number on a CPU
    for precision in ("bf16", "fp16"):
        half = next(p for p in report["paths"] if p["precision"] == precision)
        assert 0 < half["update_difference"], half  # really ran in half precision
    fp16 = next(p for p in report["paths"] if p["precision"] == "fp16")
    assert fp16["details"]["grad_scaler_scale"] == 65536.0 and fp16["details"]["optimizer_fused"] is False
    environment = report["environment"]
    assert environment["torch"] == torch.__version__
    assert set(environment["caches"]) == {"torch.compile cache", "Hugging Face cache"}
    assert "notebooks" in environment["extras"]


def test_a_path_whose_step_is_wrong_fails_with_its_figure_and_exit_status_1(monkeypatch, capsys):
    measure_only = train.clip_gradients

    def clip_nothing(optimizer, scaler, max_norm):  # a broken clipping: measures the norm, never clips
        return measure_only(optimizer, scaler, None)

    monkeypatch.setattr(train, "clip_gradients", clip_nothing)
    clipping = next(s for s in doctor.planned_paths("cpu", quick=True) if s.name.startswith("gradient clipping"))
    monkeypatch.setattr(doctor, "planned_paths", lambda device, quick: [doctor.PathSpec("defaults"), clipping])
    assert main(["doctor", "--device", "cpu", "--quick"]) == 1
    out = capsys.readouterr().out
    assert "torch " in out and "extra [notebooks]:" in out and "torch.compile cache:" in out
    assert "\nOK    defaults: update differs from CPU fp32 by 0.0e+00" in out
    failed = next(line for line in out.splitlines() if line.startswith("FAIL"))
    assert failed.startswith(f"FAIL  {clipping.name}: ")
    assert "update norm" in failed and "<= lr x clip x steps = 0.12" in failed
    assert "peak resident memory of the process" in failed
    assert out.rstrip().endswith(f"1 of 2 paths OK; FAILED: {clipping.name} (include this output in a bug report)")


def test_a_path_that_raises_is_a_fail_line_not_a_crash(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this\nsecond line")

    monkeypatch.setattr(doctor, "train_two_steps", broken)
    result = doctor.check_path(doctor.PathSpec("defaults"), "cpu", doctor.base_config("cpu"), {})
    assert not result.ok and result.figure == "error: RuntimeError: no kernel for this"
    assert result.line().startswith("FAIL  defaults: error: RuntimeError: no kernel for this; ")


def test_the_cuda_paths_are_the_gpu_defaults_and_options():
    specs = doctor.planned_paths("cuda", quick=False)
    names = [spec.name for spec in specs]
    assert names[0] == ("defaults (fp16 weights, fp16 autocast, GradScaler, fused SGD, clipping at 1, "
                        "checkpointing off)")
    assert names[1:] == ["fp32 weights, no autocast", "bf16 weights, bf16 autocast",
                         "gradient clipping at 0.001 (every step clips)", "checkpointing full",
                         "checkpointing selective", "checkpointing mixed", "torch.compile default mode",
                         "torch.compile reduce-overhead (CUDA graphs)",
                         "resume after step 1 from the run-folder files"]
    base = doctor.base_config("cuda")
    assert [doctor.precision_of(spec.config(base)) for spec in specs[:3]] == ["fp16", "fp32", "bf16"]
    assert specs[-2].config(base).train.compile == "reduce-overhead"
    quick = [spec.name for spec in doctor.planned_paths("cuda", quick=True)]
    assert not any("compile" in name for name in quick) and len(quick) == len(names) - 2
    # every path's precision on either device has a stated tolerance
    for device in ("cpu", "cuda"):
        for spec in doctor.planned_paths(device, quick=False):
            where = (device, doctor.precision_of(spec.config(doctor.base_config(device))))
            assert where in doctor.UPDATE_TOLERANCE and where in doctor.SCORE_TOLERANCE


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is missing")
def test_doctor_for_cuda_without_cuda_is_one_line(capsys):
    assert main(["doctor", "--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("vpkit doctor: error: device 'cuda' was asked for but CUDA is not available") and "\n" not in err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_doctor_on_the_gpu_passes_every_path(capsys):
    # --quick: the compiled paths take most of a minute; benchmarks/gpu_checks.sh runs the full doctor first
    assert main(["doctor", "--device", "cuda", "--quick", "--json"]) == 0, capsys.readouterr()
    report = json.loads(capsys.readouterr().out)
    assert all(path["ok"] for path in report["paths"])
    default = report["paths"][0]
    assert default["details"]["optimizer_fused"] is True and default["details"]["grad_scaler_scale"] > 0
    assert all(path["peak_memory_mib"] > 0 for path in report["paths"])
