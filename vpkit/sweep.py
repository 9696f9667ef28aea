"""Many experiments at once: a local pool (one experiment per GPU) or Slurm jobs through submitit.

    vpkit sweep --profile paper --model M --data-root D --gpus 0,1,2,3        one node, 4 at a time
    vpkit sweep --profile paper --model /abs/M --data-root /abs/D --out /abs/OUT --slurm --partition gpu
    vpkit sweep --status --out reproduce/paper                                what finished, failed, runs

Every experiment is `vpkit train <config> --out OUT/runs/<name> --resume` in a process of its own (through
torchrun when it gets several GPUs), so a sweep trains exactly what `vpkit reproduce` would, into the same
run folders: the notebooks afterwards find the runs finished and only read them. A job that stops (a
crash, a pre-empted or timed-out Slurm job, which submitit requeues) continues from its last finished epoch.

Submitting is not running: with --slurm nothing about the device is resolved on the submitting machine (often a
login node without a GPU). The configs keep the device asked (cpu, cuda, cuda:N or auto); each job resolves it
when it starts on its node, and `vpkit train` resolves everything that follows from it there (dtype, autocast,
fused SGD, compile, loader workers). Locally (--gpus, --workers) the device is this machine's, as in
`vpkit reproduce`.

OUT/sweep/ holds what the sweep itself writes:

    configs/<name>.yaml   the exact config each experiment trains
    logs/<name>.log       a local job's output (Slurm jobs: submitit's slurm/<job id>_<task>_log.out/.err)
    errors/<name>.txt     a failed Slurm job's one-line reason, written by the job (`--status` shows it)
    jobs.json             one record per experiment: run folder, log, Slurm job id, exit code
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import yaml

SWEEP_DIR = "sweep"
JOBS_FILE = "jobs.json"
SLURM_KEYS = ("partition", "time", "gpus_per_job", "account", "cpus_per_task", "array_parallelism", "mem_gb")


class SweepError(RuntimeError):
    """Bad sweep options; the message says which and what to do."""


@dataclass
class SweepJob:
    """One experiment of a sweep and where its output goes."""

    name: str
    config_path: str
    run_dir: str
    log: str
    job_id: str | None = None
    returncode: int | None = None
    error_file: str | None = None  # where a Slurm job writes why it failed, in one line

    def command(self, gpus: int = 1, device: str | None = None) -> list[str]:
        """The command that trains it: `vpkit train` (resuming), under torchrun for several GPUs; `device`
        overrides the config's train.device (a Slurm job passes the device it resolved on its node)."""
        train = ["-m", "vpkit", "train", self.config_path, "--out", self.run_dir, "--resume", "--quiet"]
        if device is not None:
            train += ["--device", device]
        if gpus > 1:
            return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                    *train]
        return [sys.executable, *train]


# ----------------------------------------------------------------------------- what to train


def plan_sweep(profile: str, overrides: dict, out_dir: str | Path,
               device_here: bool = True) -> tuple[list[SweepJob], Path]:
    """The experiments of a reproduction profile (with command-line overrides), their configs written to
    OUT/sweep/configs/; returns the jobs and OUT. The same configs and run folders as `vpkit reproduce`
    (vpkit.plan): planning makes no data, so with data_root "demo" the demo set is made by prepare_sweep.
    device_here=False (Slurm) writes the device as asked, for each job to resolve on its own node."""
    from vpkit.atomic import write_text_atomic
    from vpkit.plan import (
        COMMAND_LINE,
        FAMILIES,
        experiment_configs,
        family_experiments,
        mul_residual_variants,
        plan_settings,
    )
    from vpkit.reproduce import check_finished_run, load_profile, profile_parameters

    loaded = load_profile(profile)
    if loaded.released:
        raise SweepError(f"profile '{loaded.name}' tests the released prompts of {loaded.released} and trains "
                         f"nothing; run it with `vpkit reproduce --profile {loaded.name}`")
    parameters = profile_parameters(loaded, overrides, out_dir)
    settings = plan_settings(parameters, resolve_device=device_here)
    numbers = sorted(n for family in FAMILIES for n in family_experiments(family, settings))
    if not numbers:
        raise SweepError(f"no experiment to train: none of {settings.experiments or 'the 33'} has its dataset "
                         f"under {settings.data_root}")
    sweep_dir = settings.out_dir / SWEEP_DIR
    jobs = []
    for config in experiment_configs(numbers, settings, mul_residual_variants(numbers, settings)):
        run_dir = settings.runs_dir / config.name
        check_finished_run(config, run_dir, COMMAND_LINE)
        config_path = sweep_dir / "configs" / f"{config.name}.yaml"
        write_text_atomic(config_path, config.to_yaml())
        jobs.append(SweepJob(config.name, str(config_path), str(run_dir), str(sweep_dir / "logs" / f"{config.name}.log"),
                             error_file=str(sweep_dir / "errors" / f"{config.name}.txt")))
    return jobs, settings.out_dir


def prepare_sweep(data_root: str, out_dir: Path) -> None:
    """What the jobs need before they start, which planning does not make: with data_root "demo", the demo set
    in OUT/demo_data."""
    from vpkit.plan import DEMO_DATA, DEMO_DATA_FOLDER
    from vpkit.reproduce import ensure_demo_data

    if data_root == DEMO_DATA:
        ensure_demo_data(out_dir / DEMO_DATA_FOLDER)


def write_jobs(out_dir: str | Path, jobs: list[SweepJob]) -> None:
    from vpkit.atomic import write_json_atomic

    write_json_atomic(Path(out_dir) / SWEEP_DIR / JOBS_FILE, [asdict(job) for job in jobs])


def read_jobs(out_dir: str | Path) -> list[SweepJob]:
    path = Path(out_dir) / SWEEP_DIR / JOBS_FILE
    if not path.is_file():
        raise SweepError(f"{path}: no sweep record here; start one with `vpkit sweep --out {out_dir} ...`")
    return [SweepJob(**record) for record in json.loads(path.read_text())]


# ----------------------------------------------------------------------------- local pool


def gpu_slots(gpus: str | None, gpus_per_experiment: int = 1, workers: int | None = None) -> list[list[str]]:
    """Device groups, one experiment running on each: '0,1,2,3' -> [[0],[1],[2],[3]] (or pairs with
    gpus_per_experiment=2); without GPUs, `workers` CPU slots ([] = the job's own device setting)."""
    if gpus is None:
        return [[] for _ in range(workers or 1)]
    ids = [part.strip() for part in gpus.split(",") if part.strip()]
    if not ids or not all(part.isdigit() for part in ids):
        raise SweepError(f"--gpus {gpus!r}: give GPU numbers separated by commas, e.g. 0,1,2,3")
    if len(ids) % gpus_per_experiment:
        raise SweepError(f"--gpus {gpus} ({len(ids)} GPUs) cannot be split into groups of "
                         f"--gpus-per-experiment {gpus_per_experiment}")
    return [ids[i:i + gpus_per_experiment] for i in range(0, len(ids), gpus_per_experiment)]


def run_local(jobs: list[SweepJob], slots: list[list[str]], on_change=None, echo=print) -> list[SweepJob]:
    """Train the jobs, as many at once as there are slots; each job's output goes to its log file.
    `on_change()` is called (one thread at a time) when a job starts or ends, e.g. to update jobs.json."""
    free: queue.Queue = queue.Queue()
    for slot in slots:
        free.put(slot)
    changed = threading.Lock()

    def report() -> None:
        if on_change is not None:
            with changed:
                on_change()

    def run(job: SweepJob) -> SweepJob:
        slot = free.get()
        try:
            env = dict(os.environ)
            if slot:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(slot)  # the job sees its GPUs as cuda:0..
            Path(job.log).parent.mkdir(parents=True, exist_ok=True)
            where = f"GPU {','.join(slot)}" if slot else "this machine"
            echo(f"start {job.name} on {where} (log {job.log})")
            with open(job.log, "a") as log:
                process = subprocess.Popen(job.command(max(len(slot), 1)), stdout=log, stderr=subprocess.STDOUT,
                                           env=env)
                job.job_id = f"local:{process.pid}"
                report()
                job.returncode = process.wait()
            report()
            echo(f"{'done' if job.returncode == 0 else 'FAILED'} {job.name} (exit {job.returncode})")
            return job
        finally:
            free.put(slot)

    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        return list(pool.map(run, jobs))


# ----------------------------------------------------------------------------- Slurm


class SweepJobError(RuntimeError):
    """Why a Slurm job stopped, in one line; the job also writes it to its error file for `vpkit sweep --status`."""


class ExperimentJob:
    """What a Slurm job runs on its node: the config's device resolved there, then `vpkit train` (resuming) on it.
    On pre-emption or a time limit submitit calls `checkpoint` and requeues the same job, which resolves the
    device again on the node it gets and resumes from the last finished epoch."""

    def __init__(self, job: SweepJob, gpus: int = 1):
        self.job = job
        self.gpus = gpus

    def __call__(self) -> int:
        if self.job.error_file:
            Path(self.job.error_file).unlink(missing_ok=True)  # a requeued job starts without the last one's reason
        try:
            device = self.resolve_device()
        except SweepJobError:
            raise
        except Exception as error:  # noqa: BLE001 - e.g. its config unreadable on this node: said in one line too
            self.fail(str(error) or type(error).__name__)
        command = self.job.command(self.gpus, device)
        print("running: " + shlex.join(command), flush=True)
        returncode, error = run_keeping_error(command)
        if returncode != 0:
            self.fail(error or f"training exited with code {returncode}; see {self.job.log}")
        return returncode

    def resolve_device(self) -> str:
        """The config's train.device resolved on this node (cuda, cuda:N or cpu); a GPU asked for on a node
        without one fails the job in one line."""
        import torch

        from vpkit.config import load_config
        from vpkit.device import gpu_index, resolve_device

        asked = load_config(self.job.config_path).train.device
        node = socket.gethostname()
        if gpu_index(asked) is not None and not torch.cuda.is_available():
            why = (f"its torch {torch.__version__} is built without CUDA" if torch.version.cuda is None else
                   f"no GPU is visible, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '(unset)')}")
            self.fail(f"{self.job.config_path}: train.device is {asked!r} but node {node} has no usable GPU ({why}); "
                      "submit to a partition with GPUs (--partition, --gpus-per-job 1) or train on the CPU "
                      "(--device cpu)")
        device = resolve_device(asked)
        print(f"vpkit sweep: {self.job.name} on node {node}: device {device} (the config asks {asked!r})", flush=True)
        return device

    def fail(self, reason: str):
        """Stop the job with `reason`: in its log, in its error file, and as the exception submitit records."""
        from vpkit.atomic import write_text_atomic

        print(f"vpkit sweep: error: {reason}", file=sys.stderr, flush=True)
        if self.job.error_file:
            write_text_atomic(self.job.error_file, reason + "\n")
        raise SweepJobError(reason)

    def checkpoint(self):
        import submitit

        return submitit.helpers.DelayedSubmission(ExperimentJob(self.job, self.gpus))


def run_keeping_error(command: list[str]) -> tuple[int, str | None]:
    """Run `command` with its stderr passed through to ours; returns its exit code and the last `vpkit ...:
    error: ...` line it wrote (the one line every vpkit command stops with), if any."""
    error = None
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1) as process:
        for line in process.stderr:
            sys.stderr.write(line)
            if line.startswith("vpkit ") and ": error: " in line:
                error = line.strip()
        returncode = process.wait()
    sys.stderr.flush()
    return returncode, error


def slurm_options(profile: str | Path | None, given: dict, device: str | None = None) -> dict:
    """partition, time (minutes), gpus_per_job, account ... from the command line, else the profile's
    `slurm:` mapping; time defaults to 1440 min. gpus_per_job follows the `device` the jobs ask for: 0 for cpu
    (a CPU job asks Slurm for no GPU), else 1 by default; a GPU device without a GPU per job is refused here."""
    from vpkit.device import gpu_index
    from vpkit.reproduce import profile_path

    options: dict = {}
    if profile is not None:
        path = profile_path(profile)
        section = (yaml.safe_load(path.read_text()) or {}).get("slurm") or {}
        unknown = sorted(set(section) - set(SLURM_KEYS))
        if not isinstance(section, dict) or unknown:
            raise SweepError(f"{path}: slurm: has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(SLURM_KEYS)}")
        options.update(section)
    options.update({k: v for k, v in given.items() if v is not None})
    options.setdefault("time", 1440)
    if device == "cpu":
        if given.get("gpus_per_job"):
            raise SweepError(f"--device cpu trains on each node's CPU, but --gpus-per-job {given['gpus_per_job']} asks "
                             "Slurm for GPUs; leave --gpus-per-job out, or use --device cuda or auto")
        if options.get("gpus_per_job"):
            print(f"note: device cpu: the jobs ask Slurm for no GPU (the profile's slurm.gpus_per_job "
                  f"{options['gpus_per_job']} is for GPU devices)")
        options["gpus_per_job"] = 0
    options.setdefault("gpus_per_job", 1)
    gpus, index = int(options["gpus_per_job"]), gpu_index(device or "auto")
    if index is not None and gpus < 1:
        raise SweepError(f"device {device!r} asks for a GPU, but the jobs ask Slurm for none (gpus per job "
                         f"{options['gpus_per_job']}); give --gpus-per-job 1 (or more), or --device cpu or auto")
    if index is not None and device != "cuda" and gpus > 1:
        raise SweepError(f"device {device!r}: a job of {gpus} GPUs runs one torchrun rank per GPU, each on its own "
                         "(cuda:0, cuda:1, ...); use --device cuda")
    if index is not None and index >= gpus:
        raise SweepError(f"device {device!r}: a Slurm job sees only the GPU it is given, as cuda:0; use --device cuda")
    return options


def check_shared_paths(parameters: dict, out: str | None, default_out: Path) -> None:
    """Refuse relative --model, --data-root and --out for Slurm: they are taken from the project folder on this
    machine (vpkit.resources.project_path, as the notebooks take them), which a job's node may not see. The fix
    names the absolute paths they stand for here."""
    from vpkit.reproduce import DEMO_DATA
    from vpkit.resources import project_path, project_root

    relative = []
    model, data_root = parameters.get("model"), parameters.get("data_root")
    if model and not Path(model).expanduser().is_absolute() and project_path(model).exists():
        relative.append(("--model", model))  # a folder here; otherwise a preset name (tiny)
    if data_root and data_root != DEMO_DATA and not Path(data_root).expanduser().is_absolute():
        relative.append(("--data-root", data_root))
    if out is None or not Path(out).expanduser().is_absolute():
        relative.append(("--out", out or f"(default {default_out})"))
    if relative:
        given = ", ".join(f"{option} {value}" for option, value in relative[:-1])
        given = f"{given} and {' '.join(relative[-1])}" if given else " ".join(relative[-1])
        root = project_root()
        fix = " ".join(f"{option} {root / Path(out or default_out if option == '--out' else value).expanduser()}"
                       for option, value in relative)
        raise SweepError(f"--slurm: {given} {'is a relative path' if len(relative) == 1 else 'are relative paths'} "
                         f"(to {root}, which the jobs' nodes may not see); give absolute paths on a file "
                         f"system the nodes share, e.g. {fix}")


def slurm_parameters(options: dict, n_jobs: int) -> dict:
    """submitit's SlurmExecutor parameters (sbatch names) for an array of `n_jobs` experiments."""
    parameters = {
        "job_name": "vpkit-sweep",
        "time": int(options["time"]),
        "gpus_per_node": int(options["gpus_per_job"]) or None,  # none asked: no --gpus-per-node line at all
        "ntasks_per_node": 1,  # one launcher per job; torchrun starts a rank per GPU itself
        "cpus_per_task": int(options.get("cpus_per_task", 8)),
        "array_parallelism": int(options.get("array_parallelism", n_jobs)),
        "partition": options.get("partition"),
        "account": options.get("account"),
        "mem": f"{int(options['mem_gb'])}GB" if options.get("mem_gb") else None,
    }
    return {k: v for k, v in parameters.items() if v is not None}


def slurm_executor(folder: str | Path, options: dict, n_jobs: int, cluster: str = "slurm"):
    """A submitit executor for a job array of `n_jobs` experiments (`cluster` local or debug for tests)."""
    import submitit

    if cluster == "debug":
        return submitit.DebugExecutor(folder)
    if cluster == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=int(options["time"]), gpus_per_node=int(options["gpus_per_job"]))
        return executor
    executor = submitit.SlurmExecutor(folder, max_num_timeout=10)  # up to 10 requeues after time limits
    executor.update_parameters(**slurm_parameters(options, n_jobs))
    return executor


def sbatch_script(folder: str | Path, options: dict, n_jobs: int) -> str:
    """The sbatch file submitit writes for the array of `n_jobs` (made here without submitting, and
    without a Slurm installation: submitit's own template function, as SlurmExecutor calls it)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=n_jobs, **slurm_parameters(options, n_jobs))


def submit_slurm(jobs: list[SweepJob], out_dir: str | Path, options: dict, cluster: str = "slurm"):
    """Submit the jobs as one job array; sets each job's Slurm id and log path. Returns the submitit jobs
    (which the local/debug executors of the tests are waited on through)."""
    folder = Path(out_dir) / SWEEP_DIR / "slurm"
    executor = slurm_executor(folder, options, len(jobs), cluster)
    gpus = int(options["gpus_per_job"])
    with executor.batch():
        submitted = [executor.submit(ExperimentJob(job, gpus)) for job in jobs]
    for job, handle in zip(jobs, submitted):
        job.job_id = str(handle.job_id)
        job.log = str(handle.paths.stdout)
    return submitted


# ----------------------------------------------------------------------------- summary


def sweep_summary(out_dir: str | Path) -> pd.DataFrame:
    """name, status (finished | failed | running | waiting), epochs done, test SRCC, the log of each job and, for a
    failed Slurm job, the one-line reason it wrote (error)."""
    from vpkit.runs import read_run, run_status

    rows = []
    for job in read_jobs(out_dir):
        status = run_status(job.run_dir) if Path(job.run_dir).is_dir() else "waiting"
        row = {"name": job.name, "status": status, "epoch": None, "test_srcc": None, "log": job.log, "error": None}
        if status in ("finished", "partial"):
            record = read_run(job.run_dir)
            row["epoch"] = record.state.epoch
            row["test_srcc"] = (record.test or {}).get("srcc")
        if status != "finished":
            row["error"] = _job_error(job)
            row["status"] = "failed" if row["error"] else _unfinished_status(job)
        rows.append(row)
    return pd.DataFrame(rows)


def _job_error(job: SweepJob) -> str | None:
    """The reason a Slurm job wrote when it failed (ExperimentJob.fail), or None."""
    if not job.error_file or not Path(job.error_file).is_file():
        return None
    return Path(job.error_file).read_text().strip() or None


def clear_errors(jobs: list[SweepJob]) -> None:
    """Forget the failure reasons of jobs about to be started again (each job also clears its own when it starts)."""
    for job in jobs:
        if job.error_file:
            Path(job.error_file).unlink(missing_ok=True)


def _unfinished_status(job: SweepJob) -> str:
    if job.returncode is not None:
        return "failed" if job.returncode != 0 else "stopped"
    if job.job_id is None:
        return "waiting"
    if job.job_id.startswith("local:"):
        return "running"  # started by a `vpkit sweep` on this machine that has not recorded an exit yet
    state = _slurm_state(job)
    if state in ("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED", "BOOT_FAIL", "DEADLINE"):
        return "failed"
    return "running" if state in ("RUNNING", "COMPLETING", "REQUEUED") else "waiting"


def _slurm_state(job: SweepJob) -> str:
    """Slurm's state of a job (through sacct); UNKNOWN off the cluster."""
    try:
        import submitit

        return submitit.SlurmJob(Path(job.log).parent, job.job_id).state
    except Exception:  # noqa: BLE001 - no sacct here: the state is simply unknown
        return "UNKNOWN"


def print_summary(table: pd.DataFrame, echo=print) -> None:
    counts = table["status"].value_counts()
    echo(", ".join(f"{count} {status}" for status, count in counts.items()))
    echo(table.drop(columns="error").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for _, row in table[table["status"] == "failed"].iterrows():
        reason = f"{row['error']} (log {row['log']})" if isinstance(row["error"], str) else f"see {row['log']}"
        echo(f"failed: {row['name']}: {reason}")


# ----------------------------------------------------------------------------- command line


def register(subparsers) -> argparse.ArgumentParser:
    """Add `vpkit sweep` to the vpkit command line."""
    parser = subparsers.add_parser(
        "sweep", help="train a profile's experiments in parallel: one per GPU here, or Slurm jobs (submitit)"
    )
    parser.add_argument("--profile", default="demo", help="demo, paper or a profile YAML (as vpkit reproduce)")
    parser.add_argument("--out", help="output folder (default: reproduce/<profile>, where vpkit reproduce looks; "
                        "with --slurm an absolute path that the nodes share)")
    parser.add_argument("--model")
    parser.add_argument("--data-root")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto; with --slurm each job resolves it on its own "
                        "node (a local GPU job always sees its GPUs as cuda)")
    parser.add_argument("--experiments", help="comma-separated paper experiment numbers (default: the profile's)")
    parser.add_argument("--mul-residual", help="mul experiments also trained with prompt mode mul_residual, or none")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--status", action="store_true", help="only show what finished, failed and runs")
    local = parser.add_argument_group("one machine")
    local.add_argument("--gpus", help="GPU numbers to use, e.g. 0,1,2,3 (one experiment per GPU)")
    local.add_argument("--gpus-per-experiment", type=int, default=1,
                       help="GPUs per experiment (data-parallel through torchrun; default 1)")
    local.add_argument("--workers", type=int, help="experiments at once without --gpus (CPU)")
    slurm = parser.add_argument_group("Slurm (submitit)")
    slurm.add_argument("--slurm", action="store_true", help="submit a job array instead of running here")
    slurm.add_argument("--partition")
    slurm.add_argument("--time", type=int, help="minutes per job (default 1440; requeued jobs resume)")
    slurm.add_argument("--gpus-per-job", type=int, help="GPUs per job (default 1; none with --device cpu)")
    slurm.add_argument("--account")
    slurm.add_argument("--cpus-per-task", type=int)
    slurm.add_argument("--array-parallelism", type=int, help="at most this many jobs at once")
    slurm.add_argument("--dry-run", action="store_true", help="print the sbatch file instead of submitting")
    slurm.add_argument("--cluster", default="slurm", choices=("slurm", "local", "debug"),
                       help=argparse.SUPPRESS)  # submitit's local/debug executors, for tests
    parser.set_defaults(handler=_run_sweep)
    return parser


def _run_sweep(args) -> int:
    from vpkit.reproduce import load_profile, profile_overrides

    default_out = Path("reproduce") / Path(args.profile).stem
    out_dir = Path(args.out) if args.out else default_out
    if args.status:
        print_summary(sweep_summary(out_dir))
        return 0
    from vpkit.runs import run_status

    overrides = profile_overrides(args)
    asked = {**load_profile(args.profile).parameters, **{k: v for k, v in overrides.items() if v is not None}}
    if args.slurm:  # checked before anything is written: the jobs run elsewhere, later
        check_shared_paths(asked, args.out, default_out)
        given = {"partition": args.partition, "time": args.time, "gpus_per_job": args.gpus_per_job,
                 "account": args.account, "cpus_per_task": args.cpus_per_task,
                 "array_parallelism": args.array_parallelism}
        options = slurm_options(args.profile, given, asked.get("device"))
    jobs, out_dir = plan_sweep(args.profile, overrides, out_dir, device_here=not args.slurm)
    done = [job for job in jobs if run_status(job.run_dir) == "finished"]
    for job in done:
        job.returncode = 0
    todo = [job for job in jobs if job not in done]
    print(f"vpkit sweep: {len(todo)} experiment(s) to train, {len(done)} already finished -> {out_dir / 'runs'}")
    if not todo:
        write_jobs(out_dir, jobs)
        print_summary(sweep_summary(out_dir))
        return 0
    if args.slurm:
        gpus = int(options["gpus_per_job"])
        print(f"each job resolves device {asked.get('device')!r} on its own node ({f'{gpus} GPU(s)' if gpus else 'no GPU'}"
              f" per job); the jobs run {sys.executable}, so the nodes need this environment on a shared file system")
        if args.dry_run:
            print(sbatch_script(out_dir / SWEEP_DIR / "slurm", options, len(todo)))
            return 0
        prepare_sweep(asked["data_root"], out_dir)
        clear_errors(todo)
        submitted = submit_slurm(todo, out_dir, options, args.cluster)
        write_jobs(out_dir, done + todo)
        print(f"submitted job array {submitted[0].job_id.split('_')[0]} ({len(submitted)} jobs); follow it with "
              f"`vpkit sweep --status --out {out_dir}`")
        if args.cluster != "slurm":  # submitit's local/debug executors: wait here and record the outcome
            for job, handle in zip(todo, submitted):
                job.returncode = 0 if handle.exception() is None else 1
            write_jobs(out_dir, done + todo)
    else:
        slots = gpu_slots(args.gpus, args.gpus_per_experiment, args.workers)
        prepare_sweep(asked["data_root"], out_dir)
        clear_errors(todo)
        write_jobs(out_dir, done + todo)
        run_local(todo, slots, on_change=lambda: write_jobs(out_dir, done + todo))
    summary = sweep_summary(out_dir)
    print_summary(summary)
    return 1 if (summary["status"] == "failed").any() else 0
