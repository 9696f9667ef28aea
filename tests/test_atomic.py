"""vpkit.atomic: results appear whole, with ordinary permissions, or not at all."""
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest

from vpkit.atomic import (
    atomic_replace,
    leftover_temp_files,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_get_the_umask_permissions_not_mkstemps_0600(tmp_path, umask_022):
    write_text_atomic(tmp_path / "a.txt", "x")
    write_json_atomic(tmp_path / "b.json", {"srcc": 0.5})
    write_csv_atomic(tmp_path / "c.csv", pd.DataFrame({"a": [1]}))
    assert [mode(tmp_path / name) for name in ("a.txt", "b.json", "c.csv")] == [0o644] * 3


def test_replacing_keeps_the_old_files_permissions(tmp_path, umask_022):
    target = tmp_path / "shared.json"
    target.write_text("{}")
    target.chmod(0o640)
    write_json_atomic(target, {"new": True})
    assert mode(target) == 0o640 and '"new": true' in target.read_text()


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.csv"
    target.write_text("old\n")

    def crash(tmp):
        with open(tmp, "w") as handle:
            handle.write("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_replace(target, crash)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv"]


def test_non_finite_numbers_become_null(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"srcc": float("nan"), "values": [1.0, float("inf")]})
    assert (tmp_path / "m.json").read_text().split() == ["{", '"srcc":', "null,", '"values":', "[", "1.0,",
                                                         "null", "]", "}"]



KILLED_WRITE = """
import os, sys
from vpkit.atomic import atomic_replace

def half_then_killed(tmp):
    with open(tmp, "w") as handle:
        handle.write("half")
    os._exit(9)  # dies mid-write like kill -9: no cleanup runs

atomic_replace(sys.argv[1], half_then_killed)
"""


def test_leftover_temp_files_finds_what_a_killed_write_left_for_the_named_targets_only(tmp_path):
    result = subprocess.run([sys.executable, "-c", KILLED_WRITE, str(tmp_path / "epoch-03.safetensors")], check=False)
    assert result.returncode == 9
    (tmp_path / ".notes.tmp").write_text("a user's file")
    (found,) = leftover_temp_files(tmp_path, "epoch-*.safetensors")
    assert found.name.startswith(".epoch-03.safetensors.") and found.read_text() == "half"
    assert leftover_temp_files(tmp_path, "state.json") == []
    assert not (tmp_path / "epoch-03.safetensors").exists()
