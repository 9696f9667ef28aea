"""benchmarks/bench_train.py's projection of the paper's 33 experiments from measured rates."""
import pytest


@pytest.fixture(scope="module")
def bench(repo_script):
    return repo_script("benchmarks/bench_train.py")


def test_all_experiments_are_summed_with_the_arithmetic_shown(bench):
    lines = bench.projection_lines({4: 80.0, 32: 120.0}, 300.0)
    assert lines[0] == ("kadid: 25 x (8100 / 120.0 + 1012 / 300.0) + 1013 / 300.0 = 29.6 min per experiment, "
                        "x 11 = 5.42 h")
    kadid, koniq = 25 * (8100 / 120 + 1012 / 300) + 1013 / 300, 25 * (7058 / 80 + 1000 / 300) + 2015 / 300
    agiqa = 35 * (1789 / 80 + 596 / 300) + 597 / 300
    assert lines[-1] == f"all 33 experiments: {11 * (kadid + koniq + agiqa) / 3600:.2f} h (no early stop)"


def test_a_missing_batch_size_is_not_summed_as_all_experiments(bench):
    lines = bench.projection_lines({32: 120.0}, 300.0)
    assert "koniq: no training rate measured at batch 4" in lines
    assert lines[-1] == ("all 33 experiments: not projected (no training rate at batch 4; measure with "
                         "--batches 4 32)")
