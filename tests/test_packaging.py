"""environment.yml and pyproject.toml must install the same things; the console command must be declared."""
import ast
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)


def _environment() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _pyproject_requirements() -> dict[str, SpecifierSet]:
    """Every requirement of pyproject.toml by name; one package may stand in several extras (submitit: dev and
    cluster), always with one spec, but only once in each list."""
    project = _pyproject()["project"]
    found = _by_name(project["dependencies"], "pyproject.toml dependencies")
    for extra, lines in project.get("optional-dependencies", {}).items():
        for name, spec in _by_name(lines, f"pyproject.toml extra {extra}").items():
            assert found.get(name, spec) == spec, f"pyproject.toml gives {name} two specs: {found[name]} and {spec}"
            found[name] = spec
    return found


def _environment_pip_lines() -> list[str]:
    pip_sections = [d["pip"] for d in _environment()["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return pip_sections[0]


def _by_name(lines, source: str) -> dict[str, SpecifierSet]:
    found: dict[str, SpecifierSet] = {}
    for line in lines:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name not in found, f"{source} lists {name} twice"
        found[name] = requirement.specifier
    return found


def test_every_pyproject_dependency_is_in_environment_with_the_same_spec():
    env = _by_name([ln for ln in _environment_pip_lines() if not ln.startswith("-")], "environment.yml")
    for name, spec in _pyproject_requirements().items():
        assert name in env, f"environment.yml misses {name}{spec} (pyproject.toml has it)"
        assert env[name] == spec, f"{name}: environment.yml has '{env[name]}', pyproject.toml has '{spec}'"


def test_environment_lists_nothing_that_pyproject_lacks():
    env = _by_name([ln for ln in _environment_pip_lines() if not ln.startswith("-")], "environment.yml")
    extra = sorted(set(env) - set(_pyproject_requirements()))
    assert not extra, f"environment.yml pip-installs {extra}, which pyproject.toml does not declare"


def test_environment_installs_vpkit_itself_and_matches_python():
    assert "-e ." in _environment_pip_lines(), "environment.yml must pip-install vpkit itself (-e .)"
    conda = [d for d in _environment()["dependencies"] if isinstance(d, str)]
    assert "pip" in conda
    python = [d for d in conda if d.startswith("python")]
    assert len(python) == 1, f"environment.yml must pin python once, got {python}"
    assert SpecifierSet(python[0][len("python"):]) == SpecifierSet(_pyproject()["project"]["requires-python"])


def test_console_entry_point_is_declared():
    target = _pyproject()["project"]["scripts"]["vpkit"]
    module, _, function = target.partition(":")
    assert module.startswith("vpkit.") and function.isidentifier(), f"bad entry point {target!r}"


def test_console_entry_point_target_exists():
    module, _, function = _pyproject()["project"]["scripts"]["vpkit"].partition(":")
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    if not path.is_file():
        pytest.skip(f"{path.relative_to(ROOT)} is not written yet")
    defined = {node.name for node in ast.parse(path.read_text()).body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert function in defined, f"{path.relative_to(ROOT)} does not define {function}()"


def test_drift_is_detected():
    # The comparison itself must notice a changed spec, or the tests above could never fail.
    lines = ["numpy>=1.26", "scipy>=1.11"]
    assert _by_name(lines, "a") != _by_name(["numpy>=1.25", "scipy>=1.11"], "b")
    with pytest.raises(AssertionError, match="twice"):
        _by_name(["numpy>=1.26", "NumPy>=1.26"], "a")


def test_ci_runs_exactly_the_readme_test_command():
    """.ci/run's command line appears verbatim in README.md's quick start, so the two cannot drift apart."""
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert len(ci_lines) == 1, f".ci/run should hold one command line, found {ci_lines}"
    assert ci_lines[0] in (ROOT / "README.md").read_text()


# ----------------------------------------------------------------------------- installed, not cloned


SHIPPED = ("vpkit/notebooks/00_data.ipynb", "vpkit/notebooks/06_prompt_gallery.ipynb", "vpkit/configs/exp_01.yaml",
           "vpkit/configs/exp_33.yaml", "vpkit/configs/profiles/demo.yaml", "vpkit/configs/profiles/paper.yaml",
           "vpkit/assets/paper_results.csv", "vpkit/assets/tiny_mplug_owl2/model.safetensors")


def test_the_installed_wheel_runs_the_demos_first_notebook(tmp_path):
    """The wheel carries the notebooks, configs, profiles and the paper's numbers, and an installed vpkit (not
    this checkout) finds them: `vpkit reproduce --profile demo --only 00` from a folder outside the checkout."""
    import os
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("papermill")
    source = tmp_path / "source"  # a copy, so that building leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "vpkit", source / "vpkit", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "wheel"), str(source)], check=True, cwd=tmp_path)
    (wheel,) = (tmp_path / "wheel").glob("vpkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [name for name in SHIPPED if name not in names], sorted(n for n in names if not n.endswith(".py"))

    site = tmp_path / "site"  # the dependencies come from this environment; vpkit from the wheel only
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    env.pop("VPKIT_PROJECT_ROOT", None)
    check = ("import vpkit, vpkit.tables as t; print(vpkit.__file__); print(len(t.read_paper_results()));"
             "from vpkit.data.synth import generate; generate('out/demo_data', n_refs=5, distortions=['jpeg', "
             "'pixelate', 'brighten', 'darken'], levels=(1, 3, 5), size=(96, 72), progress=False, workers=1)")
    shown = subprocess.run([sys.executable, "-c", check], cwd=elsewhere, env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    assert Path(shown[0]).is_relative_to(site) and int(shown[1]) > 0, shown
    done = subprocess.run([sys.executable, "-m", "vpkit", "reproduce", "--profile", "demo", "--only", "00", "--out",
                           "out"], check=False, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (elsewhere / "out" / "notebooks" / "00_data.ipynb").is_file()
    assert (elsewhere / "out" / "figures" / "00_examples.png").is_file()
    assert (elsewhere / "out" / "tables" / "datasets.csv").is_file()
