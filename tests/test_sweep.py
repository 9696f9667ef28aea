"""`vpkit sweep`: a local pool of 2 workers and submitit's debug executor train what a sequential run trains,
into the same run folders; the Slurm job array's sbatch file carries the options; the summary names failures."""
import json
import os
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from vpkit import sweep
from vpkit.cli import main
from vpkit.config import load_config, paper_config
from vpkit.reproduce import load_profile, notebook_settings, profile_parameters, run_experiments
from vpkit.runs import load_prompt_checkpoint, read_run
from vpkit.sweep import (
    ExperimentJob,
    SweepJob,
    plan_sweep,
    sbatch_script,
    slurm_options,
    submit_slurm,
    sweep_summary,
    write_jobs,
)

pytest.importorskip("submitit")

EXPERIMENTS = [4, 7]  # KADID padding and centre patch: the test set has only KADID
TIMING_COLUMNS = ["train_seconds", "train_images_per_s", "train_data_wait_s"]


@pytest.fixture(scope="module")
def profile(tmp_path_factory, data_root):
    path = tmp_path_factory.mktemp("profile") / "tiny_sweep.yaml"
    parameters = {"model": "tiny-random", "data_root": str(data_root), "experiments": EXPERIMENTS, "epochs": 1,
                  "batch_size": 4, "lr": None, "limit": 4, "device": "cpu", "seed": 42, "mul_residual": [],
                  "extra_seeds": {}}
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
    assert main([*command, "--device", "auto", "--slurm", "--cluster", "debug"]) == 0
    assert_same_runs(tmp_path / "runs", sequential_runs, count=1)
    out = capsys.readouterr().out
    assert "1 finished" in out and "device cpu (the config asks 'auto')" in out
    [name] = [path.name for path in (tmp_path / "runs").iterdir()]
    assert load_config(tmp_path / "sweep" / "configs" / f"{name}.yaml").train.device == "auto"  # as asked
    assert load_config(tmp_path / "runs" / name / "config.yaml").train.device == "cpu"  # as the job resolved it


def test_the_sbatch_file_of_the_job_array_carries_the_options(profile, tmp_path):
    options = slurm_options(profile, {"time": 90, "gpus_per_job": 2})  # command line wins over the profile
    script = sbatch_script(tmp_path / "slurm", options, 33)
    for line in ("#SBATCH --partition=gpu-long", "#SBATCH --account=iqa-lab", "#SBATCH --time=90",
                 "#SBATCH --gpus-per-node=2", "#SBATCH --array=0-32%33", "#SBATCH --ntasks-per-node=1",
                 "#SBATCH --signal=USR2@90"):
        assert line in script.splitlines(), line
    assert f"-m submitit.core._submit {tmp_path / 'slurm'}" in script


def test_a_requeued_job_runs_the_same_resuming_command():
    job = SweepJob("exp", "c.yaml", "runs/exp", "exp.log")
    command = job.command(gpus=2, device="cuda")
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"] and "--resume" in command
    assert command[-2:] == ["--device", "cuda"] and "--device" not in job.command(gpus=2)
    resubmission = ExperimentJob(job, gpus=2).checkpoint()  # resolves its device again on the node it gets
    assert (resubmission.function.job, resubmission.function.gpus) == (job, 2)


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



def test_planning_a_demo_sweep_makes_no_data_and_no_folders(tmp_path, monkeypatch):
    """The plan is vpkit.plan's, without side effects: the demo set is planned as the dataset it will hold, and only
    the job configs are written; the set is made when there is something to train (prepare_sweep)."""
    import vpkit.reproduce

    monkeypatch.setattr(vpkit.reproduce, "ensure_demo_data", lambda *args, **kwargs: pytest.fail("data made"))
    jobs, out = plan_sweep("demo", {"model": "tiny-random", "experiments": [4, 10]}, tmp_path, device_here=False)
    assert [job.name for job in jobs][:2] == ["exp_04_kadid_padding_30px_add", "exp_10_kadid_center_patch_30px_add"]
    assert sorted(path.name for path in out.iterdir()) == ["sweep"]  # the configs; no runs/, tables/, demo_data/
    assert load_config(jobs[0].config_path).dataset.root == str(tmp_path / "demo_data")
    made = []
    monkeypatch.setattr(vpkit.reproduce, "ensure_demo_data", made.append)
    sweep.prepare_sweep("demo", out)
    sweep.prepare_sweep(str(tmp_path / "elsewhere"), out)  # a data root of the user's own: nothing to make
    assert made == [tmp_path / "demo_data"]


# ----------------------------------------------------------------------------- submitting from a login node


@pytest.fixture
def login_node(monkeypatch):
    """This process as a cluster's login node: CUDA is not available here (whatever the machine has)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_a_submission_without_cuda_keeps_the_device_asked_in_the_job_configs(login_node, data_root, tmp_path,
                                                                             device, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "--profile", "paper", "--model", "tiny-random", "--data-root", str(data_root), "--out",
                 str(out), "--experiments", "4", "--device", device, "--slurm", "--dry-run"]) == 0
    assert "#SBATCH --gpus-per-node=1" in capsys.readouterr().out.splitlines()
    config = load_config(out / "sweep" / "configs" / "exp_04_kadid_padding_30px_add.yaml")
    paper = paper_config(4)
    assert config.train.device == device
    # what follows from the device is left to the job too (vpkit.config.resolve_for_model in `vpkit train`)
    assert (config.model.dtype, config.train.amp, config.train.compile, config.train.checkpointing,
            config.train.num_workers) == (paper.model.dtype, paper.train.amp, paper.train.compile,
                                          paper.train.checkpointing, None)


def test_a_cpu_sweep_asks_slurm_for_no_gpu_and_a_gpu_one_needs_a_gpu(login_node, data_root, tmp_path, capsys):
    command = ["sweep", "--profile", "paper", "--model", "tiny-random", "--data-root", str(data_root), "--out",
               str(tmp_path / "out"), "--experiments", "4", "--slurm", "--dry-run"]
    assert main([*command, "--device", "cpu"]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if "--gpus-per-node" in line]
    assert main([*command, "--gpus-per-job", "0"]) == 2  # the paper profile's cuda
    assert main([*command, "--device", "cuda:1"]) == 2  # one GPU per job: it is cuda:0 there
    assert main([*command, "--device", "cpu", "--gpus-per-job", "2"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and "'cuda' asks for a GPU, but the jobs ask Slurm for none" in errors[0]
    assert "use --device cuda" in errors[1] and "--device cpu trains on each node's CPU" in errors[2]


def test_relative_paths_are_refused_for_slurm_before_anything_is_written(login_node, data_root, tmp_path,
                                                                         monkeypatch, capsys):
    (tmp_path / "data").symlink_to(data_root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VPKIT_PROJECT_ROOT", str(tmp_path))  # what relative paths are relative to (vpkit.resources)
    assert main(["sweep", "--profile", "paper", "--model", "tiny-random", "--data-root", "data", "--slurm",
                 "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert "--data-root data and --out (default reproduce/paper) are relative paths" in error
    assert f"--data-root {tmp_path / 'data'} --out {tmp_path / 'reproduce' / 'paper'}" in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]


def test_a_job_resolves_its_device_on_its_node(profile, tmp_path, monkeypatch, capsys):
    node_has_gpu = False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: node_has_gpu)
    jobs, out = plan_sweep(profile, {"device": "auto", "experiments": [4]}, tmp_path, device_here=False)
    [handle] = submit_slurm(jobs, out, slurm_options(profile, {}, "auto"), cluster="debug")
    launched = []
    monkeypatch.setattr(sweep, "run_keeping_error", lambda command: (launched.append(command), (0, None))[1])
    node_has_gpu = True  # the job starts later, on a node with a GPU (its training is not run: no CUDA here)
    assert handle.exception() is None
    assert launched[0][-2:] == ["--device", "cuda"]
    assert "device cuda (the config asks 'auto')" in capsys.readouterr().out


def test_a_job_asking_for_a_gpu_on_a_node_without_one_fails_in_one_line_that_status_shows(
        login_node, data_root, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "--profile", "paper", "--model", "tiny-random", "--data-root", str(data_root), "--out",
                 str(out), "--experiments", "4", "--slurm", "--cluster", "debug"]) == 1
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)  # another node, another folder: the same file system
    assert main(["sweep", "--status", "--out", str(out)]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("failed: ")]
    assert "train.device is 'cuda' but node" in line and "has no usable GPU" in line and "--device cpu" in line
    assert not (out / "runs" / "exp_04_kadid_padding_30px_add").exists()  # it stopped before training


def test_a_failed_trainings_error_line_is_kept(capsys):
    code = "import sys; print('progress', file=sys.stderr); print('vpkit train: error: bad', file=sys.stderr); sys.exit(2)"
    assert sweep.run_keeping_error([sys.executable, "-c", code]) == (2, "vpkit train: error: bad")
    assert "progress" in capsys.readouterr().err  # the rest still reaches the job's log


def test_the_readmes_slurm_example_as_written(login_node, data_root, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    [line] = [line for line in readme.splitlines() if line.startswith("vpkit sweep ") and "--slurm" in line]
    (tmp_path / "models" / "mplug-owl2-llama2-7b").mkdir(parents=True)  # not loaded at submission
    (tmp_path / "data").symlink_to(data_root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PWD", str(tmp_path))
    argv = shlex.split(os.path.expandvars(line))  # as the shell expands it
    assert argv[0] == "vpkit" and main([*argv[1:], "--dry-run"]) == 0
    script = capsys.readouterr().out.splitlines()
    for option in ("--partition=gpu", "--account=mylab", "--time=720", "--gpus-per-node=1"):
        assert f"#SBATCH {option}" in script
    configs = sorted((tmp_path / "reproduce" / "paper" / "sweep" / "configs").iterdir())
    assert configs and {load_config(path).train.device for path in configs} == {"cuda"}


def test_a_run_finished_on_a_gpu_counts_as_finished_for_a_sweep_asking_auto(profile, sequential_runs, tmp_path,
                                                                           login_node, capsys):
    import shutil

    name = "exp_04_kadid_padding_30px_add"
    shutil.copytree(sequential_runs / name, tmp_path / "runs" / name)
    recorded = yaml.safe_load((tmp_path / "runs" / name / "config.yaml").read_text())
    recorded["train"].update(device="cuda", amp="fp16")  # as `vpkit train` records a run it trained on a GPU
    recorded["model"]["dtype"] = "fp16"
    (tmp_path / "runs" / name / "config.yaml").write_text(yaml.safe_dump(recorded))
    state = json.loads((tmp_path / "runs" / name / "state.json").read_text())
    state["config_hash"] = load_config(tmp_path / "runs" / name / "config.yaml").hash()  # the hash it ran under
    (tmp_path / "runs" / name / "state.json").write_text(json.dumps(state))
    command = ["sweep", "--profile", str(profile), "--out", str(tmp_path), "--experiments", "4", "--slurm", "--dry-run"]
    assert main([*command, "--device", "auto"]) == 0  # the jobs would resolve auto on GPU nodes: the same run
    assert "0 experiment(s) to train, 1 already finished" in capsys.readouterr().out


def test_the_released_profile_is_refused_by_sweep_it_trains_nothing(tmp_path):
    from vpkit.sweep import SweepError, plan_sweep

    with pytest.raises(SweepError, match="tests the released prompts of yahya007/mplug2-vp-for-nriqa"):
        plan_sweep("released", {"data_root": str(tmp_path)}, tmp_path / "out")
