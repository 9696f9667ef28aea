"""Data-parallel training: two CPU processes (gloo, started by torchrun) end where one process ends.

Tolerance: the two runs add the same numbers in another order (each rank's mean over its share, then the
all-reduce), so gradients differ in the last float32 bits and lr 60 carries that into the prompt. Measured:
at most 2e-7 on prompt values of about 0.4; the tests allow 1e-5 for prompts, scores and metrics.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from vpkit import distributed
from vpkit.data.loader import EpochSampler
from vpkit.runs import load_prompt_checkpoint, read_run, read_state, run_status

sys.path.insert(0, str(Path(__file__).parent))
from _ddp_train import tiny_config

WORKER = Path(__file__).parent / "_ddp_train.py"
TOLERANCE = 1e-5
TIMING_COLUMNS = ["train_seconds", "train_images_per_s", "train_data_wait_s"]


def test_rank_shards_interleave_back_into_the_one_process_epoch():
    one = list(EpochSampler(11, shuffle=True, flip=True, seed=3, rank=0, world_size=1).__iter__())
    shards = []
    for rank in range(3):
        sampler = EpochSampler(11, shuffle=True, flip=True, seed=3, rank=rank, world_size=3)
        shards.append(list(iter(sampler)))
        assert len(sampler) == len(shards[-1])
    assert [len(shard) for shard in shards] == [4, 4, 3]
    assert [shards[p % 3][p // 3] for p in range(11)] == one  # same (index, flip) at every position


def test_a_batch_the_ranks_cannot_share_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=0, size=4))
    with pytest.raises(ValueError, match="batch_size 30 cannot be split over 4 processes"):
        distributed.check_global_batch(30, 100)
    with pytest.raises(ValueError, match="last batch of 2 image"):
        distributed.check_global_batch(32, 66)
    distributed.check_global_batch(32, 68)  # a last batch of 4: one image per rank


def torchrun(*args, check=True):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(WORKER), *map(str, args)]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"torchrun failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, data_root):
    from vpkit.train import train

    run_dir = tmp_path_factory.mktemp("one") / "run"
    train(tiny_config(data_root), run_dir, progress=False)
    return run_dir


def assert_same_run(run_dir: Path, reference: Path):
    for name in ("epoch-01.safetensors", "epoch-02.safetensors", "best.safetensors"):
        got, _ = load_prompt_checkpoint(run_dir / name)
        want, _ = load_prompt_checkpoint(reference / name)
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=TOLERANCE, msg=f"{name} {key}")
    metrics, expected = read_run(run_dir).metrics, read_run(reference).metrics
    pd.testing.assert_frame_equal(metrics.drop(columns=TIMING_COLUMNS), expected.drop(columns=TIMING_COLUMNS),
                                  check_exact=False, atol=TOLERANCE, rtol=0)
    got, want = json.loads((run_dir / "test.json").read_text()), json.loads((reference / "test.json").read_text())
    assert set(got) == set(want)
    for key, value in want.items():
        assert got[key] == (pytest.approx(value, abs=TOLERANCE) if isinstance(value, float) else value), key
    predictions, expected = pd.read_csv(run_dir / "predictions.csv"), pd.read_csv(reference / "predictions.csv")
    assert list(predictions["name"]) == list(expected["name"])  # every test image once, in the same order
    np.testing.assert_allclose(predictions["score"], expected["score"], rtol=0, atol=TOLERANCE)


def test_two_processes_train_the_prompt_one_process_trains(one_process_run, data_root, tmp_path):
    run_dir = tmp_path / "two"
    torchrun(data_root, run_dir)
    assert_same_run(run_dir, one_process_run)
    assert read_run(run_dir).metrics["train_images_per_s"].gt(0).all()
    assert not list(run_dir.glob("*.tmp*"))  # rank 1 wrote nothing half-way


def test_a_dead_rank_ends_the_job_and_resume_on_two_ranks_finishes_it(one_process_run, data_root, tmp_path):
    run_dir = tmp_path / "crashed"
    crashed = torchrun(data_root, run_dir, "--die-on-rank", "1", check=False)
    assert crashed.returncode != 0
    assert "simulated crash after epoch 1" in crashed.stdout + crashed.stderr
    assert run_status(run_dir) == "partial" and read_state(run_dir).epoch == 1  # epoch 1 intact
    torchrun(data_root, run_dir, "--resume")
    assert run_status(run_dir) == "finished"
    assert_same_run(run_dir, one_process_run)
