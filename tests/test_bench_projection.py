"""benchmarks/bench_train.py's projection of the paper's 33 experiments from measured rates: checked by its figures
(the arithmetic it shows must compute the time it states, and the total must be the sum), not by its wording."""
import re

import pytest

# The paper's splits (train, val, test) and epochs, as bench_train reads them from vpkit
KADID = 25 * (8100 / 120 + 1012 / 300) + 1013 / 300
KONIQ = 25 * (7058 / 80 + 1000 / 300) + 2015 / 300
AGIQA = 35 * (1789 / 80 + 596 / 300) + 597 / 300


@pytest.fixture(scope="module")
def bench(repo_script):
    return repo_script("benchmarks/bench_train.py")


def shown_arithmetic(line: str) -> float:
    """The seconds that the arithmetic a line shows ("25 x (8100 / 120.0 + ...) + 1013 / 300.0 = ...") computes."""
    expression = line.split(":", 1)[1].split("=", 1)[0].replace(" x ", " * ")
    assert re.fullmatch(r"[\d.()+*/ ]+", expression), line
    return eval(expression)  # digits and operators only, checked above


def figure(line: str, unit: str) -> float:
    return float(re.search(rf"(\d+(?:\.\d+)?) {unit}\b", line).group(1))


def test_all_experiments_are_summed_with_the_arithmetic_shown(bench):
    lines = bench.projection_lines({4: 80.0, 32: 120.0}, 300.0)
    assert [line.split(":")[0] for line in lines] == ["kadid", "koniq", "agiqa", "all 33 experiments"]
    for line, seconds in zip(lines, (KADID, KONIQ, AGIQA)):
        assert shown_arithmetic(line) == pytest.approx(seconds)
        assert figure(line, "min") == pytest.approx(seconds / 60, abs=0.05)  # per experiment, 11 of each
        assert figure(line, "h") == pytest.approx(11 * seconds / 3600, abs=0.005)
    assert figure(lines[-1], "h") == pytest.approx(11 * (KADID + KONIQ + AGIQA) / 3600, abs=0.005)


def test_a_missing_batch_size_is_not_summed_as_all_experiments(bench):
    lines = bench.projection_lines({32: 120.0}, 300.0)
    koniq = next(line for line in lines if line.startswith("koniq:"))
    assert "batch 4" in koniq and "=" not in koniq  # said to be missing, not projected
    assert re.search(r"\d h\b", lines[-1]) is None  # no total over the datasets that were measured
    assert "--batches 4 32" in lines[-1]  # the command that measures what is missing
