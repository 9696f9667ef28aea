"""Where the files that ship inside the package live, and where a notebook's relative paths point.

The notebooks, the experiment configs and reproduce profiles, the paper's published numbers and the tiny
model's weights are package data (vpkit/notebooks, vpkit/configs, vpkit/assets), so an installed vpkit
(`pip install vpkit`, a wheel, `pip install git+...`) has them as a clone does. Everything finds them here,
through importlib.resources, never relative to a source file.

A notebook's relative paths (out_dir, data_root) are taken relative to `project_root()`, not to the folder
Jupyter or papermill happens to start in, so `reproduce/demo` names one folder wherever the notebook runs.
"""
from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

PACKAGE = "vpkit"
# Set this to make a notebook's relative paths resolve against another folder (a project of your own).
PROJECT_ROOT_VARIABLE = "VPKIT_PROJECT_ROOT"


def package_path(*parts: str) -> Path:
    """A file or folder shipped inside the package, e.g. package_path("configs", "profiles")."""
    resource = files(PACKAGE).joinpath(*parts)
    path = Path(str(resource))
    if not isinstance(resource, Path) and not path.exists():
        # a zip import has no file-system path; papermill and the YAML readers need one
        raise FileNotFoundError(f"{'/'.join(parts)} is inside a zipped vpkit ({resource}); install vpkit "
                                "unzipped (pip install vpkit)")
    return path


def project_root() -> Path:
    """The folder a notebook's relative paths are relative to: $VPKIT_PROJECT_ROOT when set; else the clone
    vpkit runs from (the folder holding its pyproject.toml), as `vpkit reproduce` run there writes
    reproduce/<profile>; else, for an installed vpkit, the current folder (where `vpkit reproduce` writes)."""
    chosen = os.environ.get(PROJECT_ROOT_VARIABLE)
    if chosen:
        return Path(chosen).expanduser().resolve()
    checkout = package_path().resolve().parent
    if (checkout / "pyproject.toml").is_file() and (checkout / PACKAGE / "__init__.py").is_file():
        return checkout
    return Path.cwd().resolve()


def project_path(value: str | Path) -> Path:
    """`value` made absolute: relative paths against project_root(), `~` expanded."""
    path = Path(value).expanduser()
    return (path if path.is_absolute() else project_root() / path).resolve()
