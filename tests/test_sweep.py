"""`vpkit sweep`: a local pool of 2 workers and submitit's debug executor train what a sequential run trains,
into the same run folders; the Slurm job array's sbatch file carries the options; the summary names failures."""
import json

import pandas as pd
import pytest
import torch
import yaml

from vpkit.cli import main
from vpkit.reproduce import load_profile, notebook_settings, profile_parameters, run_experiments
from vpkit.runs import load_prompt_checkpoint, read_run
from vpkit.sweep import SweepJob, sbatch_script, slurm_options, sweep_summary, write_jobs

pytest.importorskip("submitit")

EXPERIMENTS = [4, 7]  # KADID padding and centre patch: the test set has only KADID
TIMING_COLUMNS = ["train_seconds", "train_images_per_s", "train_data_wait_s"]


@pytest.fixture(scope="module")
def profile(tmp_path_factory, data_root):
    path = tmp_path_factory.mktemp("profile") / "tiny_sweep.yaml"
    parameters = {"model": "tiny-random", "data_root": str(data_root), "experiments": EXPERIMENTS, "epochs": 1,
                  "batch_size": 4, "lr": None, "limit": 4, "device": "cpu", "seed": 42}
    slurm = {"partition": "gpu-long", "time": 720, "gpus_per_job": 1, "account": "iqa-lab"}
    path.write_text(yaml.safe_dump({"description": "test", "required": [], "parameters": parameters,
                                    "slurm": slurm}))
    return path


@pytest.fixture(scope="module")
def sequential_runs(profile, tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential")
    settings = notebook_settings(progress=False, **profile_parameters(load_profile(profile), {}, out))
    run_experiments(EXPERIMENTS, settings, progress=False)  # what the training notebooks call
    return out / "runs"


def assert_same_runs(runs, reference, count=2):
    names = sorted(path.name for path in runs.iterdir())
    assert len(names) == count and set(names) <= {path.name for path in reference.iterdir()}
    for name in names:
        got, want = read_run(runs / name), read_run(reference / name)
        assert got.status == want.status == "finished"
        pd.testing.assert_frame_equal(got.metrics.drop(columns=TIMING_COLUMNS),
                                      want.metrics.drop(columns=TIMING_COLUMNS))
        assert got.test == want.test
        prompt, _ = load_prompt_checkpoint(runs / name / "best.safetensors")
        reference_prompt, _ = load_prompt_checkpoint(reference / name / "best.safetensors")
        assert prompt.keys() == reference_prompt.keys()
        assert all(torch.equal(prompt[key], reference_prompt[key]) for key in prompt)


def test_a_local_pool_of_two_gives_the_sequential_run_folders(profile, sequential_runs, tmp_path, capsys):
    assert main(["sweep", "--profile", str(profile), "--out", str(tmp_path), "--workers", "2"]) == 0
    assert_same_runs(tmp_path / "runs", sequential_runs)
    out = capsys.readouterr().out
    assert f"{len(EXPERIMENTS)} finished" in out
    records = json.loads((tmp_path / "sweep" / "jobs.json").read_text())
    assert [record["returncode"] for record in records] == [0, 0]
    assert all((tmp_path / "sweep" / "logs" / f"{r['name']}.log").is_file() for r in records)

    assert main(["sweep", "--profile", str(profile), "--out", str(tmp_path), "--workers", "2"]) == 0
    assert "0 experiment(s) to train, 2 already finished" in capsys.readouterr().out  # nothing is started again


def test_the_slurm_path_through_submitits_debug_executor(profile, sequential_runs, tmp_path, capsys):
    command = ["sweep", "--profile", str(profile), "--out", str(tmp_path), "--experiments", "4"]  # one job: fast
    assert main([*command, "--slurm", "--cluster", "debug"]) == 0
    assert_same_runs(tmp_path / "runs", sequential_runs, count=1)
    assert "1 finished" in capsys.readouterr().out


def test_the_sbatch_file_of_the_job_array_carries_the_options(profile, tmp_path):
    options = slurm_options(profile, {"time": 90, "gpus_per_job": 2})  # command line wins over the profile
    script = sbatch_script(tmp_path / "slurm", options, 33)
    for line in ("#SBATCH --partition=gpu-long", "#SBATCH --account=iqa-lab", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --array=0-32%33", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --signal=USR2@90"):
        assert line in script.splitlines(), line
    assert f"-m submitit.core._submit {tmp_path / 'slurm'}" in script


def test_a_requeued_job_runs_the_same_resuming_command():
    from vpkit.sweep import ExperimentJob

    job = SweepJob("exp", "c.yaml", "runs/exp", "exp.log")
    command = job.command(gpus=2)
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--resume" in command
    resubmission = ExperimentJob(command).checkpoint()
    assert resubmission.function.command == command


def test_the_summary_names_failed_jobs_with_their_log(tmp_path, capsys):
    log = tmp_path / "sweep" / "logs" / "exp_x.log"
    write_jobs(tmp_path, [SweepJob("exp_x", "c.yaml", str(tmp_path / "runs" / "exp_x"), str(log), returncode=1),
                          SweepJob("exp_y", "c.yaml", str(tmp_path / "runs" / "exp_y"), "y.log")])
    table = sweep_summary(tmp_path)
    assert list(table["status"]) == ["failed", "waiting"]
    assert main(["sweep", "--status", "--out", str(tmp_path)]) == 0
    assert f"failed: exp_x: see {log}" in capsys.readouterr().out


def test_gpu_slots_group_the_gpus_and_refuse_what_does_not_split():
    from vpkit.sweep import SweepError, gpu_slots

    assert gpu_slots("0,1,2,3") == [["0"], ["1"], ["2"], ["3"]]
    assert gpu_slots("0,1,2,3", gpus_per_experiment=2) == [["0", "1"], ["2", "3"]]
    assert gpu_slots(None, workers=2) == [[], []]
    with pytest.raises(SweepError, match="groups of --gpus-per-experiment 2"):
        gpu_slots("0,1,2", gpus_per_experiment=2)
    with pytest.raises(SweepError, match="GPU numbers"):
        gpu_slots("a,b")


def test_reproduce_under_torchrun_is_refused_with_the_sweep_to_use(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["reproduce", "--profile", "demo", "--out", str(tmp_path)]) == 2
    assert "vpkit sweep --gpus" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was run


def test_the_plan_holds_the_mul_residual_variants_reproduce_trains(data_root, tmp_path):
    from vpkit.config import load_config
    from vpkit.sweep import plan_sweep

    overrides = {"model": "tiny-random", "data_root": str(data_root), "experiments": [4, 22, 25]}
    jobs, _ = plan_sweep("demo", overrides, tmp_path)  # the demo profile's mul_residual: [22], extra_seeds {4: [1, 2]}
    assert [job.name for job in jobs] == ["exp_04_kadid_padding_30px_add", "exp_22_kadid_padding_30px_mul",
                                          "exp_25_kadid_center_patch_30px_mul", "exp_22_kadid_padding_30px_mul_residual",
                                          "exp_04_kadid_padding_30px_add_seed1", "exp_04_kadid_padding_30px_add_seed2"]
    fix = load_config(jobs[3].config_path)
    assert (fix.number, fix.prompt.mode) == (22, "mul_residual") and jobs[3].run_dir == str(tmp_path / "runs" / fix.name)
    assert load_config(jobs[-1].config_path).train.seed == 2
    jobs, _ = plan_sweep("demo", {**overrides, "mul_residual": [], "extra_seeds": {}}, tmp_path)
    assert len(jobs) == 3
