"""The notebooks: committed clean, parameterised for papermill, and, executed headlessly through
`vpkit reproduce` with tiny settings, producing the run folders, tables and figures they promise."""
import ast
import json
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vpkit import reproduce

NOTEBOOKS = sorted(reproduce.NOTEBOOKS_DIR.glob("*.ipynb"))
EXPERIMENTS = [4, 10, 19]  # one per family: padding, centre patch, full overlay (all KADID)
FIGURES = ("00_mos_histograms", "00_examples", "01_zero_shot_score_types", "02_padding_curves",
           "03_patch_curves", "04_full_curves", "05_padding_vs_paper", "05_prompt_types", "05_add_vs_mul",
           "06_prompt_gallery")
TEST_PROFILE = """
description: notebook test, tiny everything
required: []
parameters:
  model: tiny-random
  data_root: demo
  experiments: [4, 10, 19]
  epochs: 1
  batch_size: 16
  lr: null
  limit: 16
  device: cpu
  seed: 42
"""


# ----------------------------------------------------------------------------- as committed


def test_every_notebook_is_there():
    assert [p.stem for p in NOTEBOOKS] == list(reproduce.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {index + 1} has outputs: clear them before committing"
            assert cell.execution_count is None, f"{path.name} cell {index + 1} has an execution count"
    assert notebook.metadata["kernelspec"]["name"] == reproduce.KERNEL_NAME


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_parameters_cell(path):
    notebook = nbformat.read(path, as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell not tagged 'parameters'"
    assignments = [node for node in ast.parse(first.source).body if isinstance(node, ast.Assign)]
    assert [node.targets[0].id for node in assignments] == list(reproduce.PARAMETERS)
    # literals only (papermill overrides them), and themselves valid parameters
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in assignments}
    reproduce.check_parameters(values, path.name)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_only_call_vpkit(path):
    """No logic in the notebooks: no loops, functions or classes, and only vpkit imported."""
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.For, ast.While, ast.FunctionDef, ast.ClassDef, ast.If)), cell.source
            if isinstance(node, ast.ImportFrom):
                assert node.module == "vpkit", cell.source
            assert not isinstance(node, ast.Import), cell.source


# ----------------------------------------------------------------------------- executed


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook run once by `vpkit reproduce` (tiny-random model, 60-image synthetic set, 1 epoch)."""
    pytest.importorskip("papermill")
    pytest.importorskip("seaborn")
    from vpkit.cli import main
    from vpkit.data.synth import generate

    root = tmp_path_factory.mktemp("reproduce")
    out = root / "out"
    # a smaller set than the demo's, placed where data_root="demo" looks, so it is found, not generated
    generate(out / reproduce.DEMO_DATA_FOLDER, n_refs=5, distortions=["jpeg", "pixelate", "brighten", "darken"],
             levels=(1, 3, 5), size=(96, 72), progress=False, workers=1)
    profile = root / "tiny.yaml"
    profile.write_text(TEST_PROFILE)
    status = main(["reproduce", "--profile", str(profile), "--out", str(out)])
    assert status == 0
    return out


def test_reproduce_keeps_the_executed_notebooks(executed):
    for path in NOTEBOOKS:
        notebook = nbformat.read(executed / "notebooks" / path.name, as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert any("injected-parameters" in cell.metadata.get("tags", []) for cell in code), path.name
        assert all(cell.execution_count is not None for cell in code), path.name
        errors = [o for cell in code for o in cell.outputs if o.output_type == "error"]
        assert not errors, path.name


def test_one_finished_run_per_family(executed):
    runs = sorted(p.name for p in (executed / "runs").iterdir())
    assert runs == ["exp_04_kadid_padding_30px_add", "exp_10_kadid_center_patch_30px_add", "exp_19_kadid_full_add"]
    for name in runs:
        run = executed / "runs" / name
        state = json.loads((run / "state.json").read_text())
        assert state["finished"] and state["epoch"] == 1
        test = json.loads((run / "test.json").read_text())
        assert test["n_images"] == 12 and -1 <= test["srcc"] <= 1
        assert (run / "best.safetensors").is_file()


def read_table(executed, name):
    return pd.read_csv(executed / "tables" / name, na_values=["n/a"])


def test_data_and_zero_shot_tables(executed):
    from vpkit.scoring import SCORE_TYPES

    datasets = read_table(executed, "datasets.csv").set_index("dataset")
    assert bool(datasets.loc["kadid", "usable"]) and datasets.loc["kadid", ["train", "val", "test"]].tolist() == [36, 12, 12]
    assert not datasets.loc["koniq", "usable"] and "KonIQ-10k" in datasets.loc["koniq", "note"]
    zero_shot = read_table(executed, "zero_shot.csv")
    assert zero_shot["score_type"].tolist() == [*SCORE_TYPES, "qalign"]
    assert set(zero_shot["dataset"]) == {"kadid"} and set(zero_shot["n_images"]) == {12}
    assert zero_shot["srcc"].between(-1, 1).all()  # tiny-random has every score word as one token


def test_paper_tables_rebuilt_from_the_runs(executed):
    padding = read_table(executed, "table_padding_30px_add.csv")
    assert padding.columns.tolist()[:6] == ["experiment", "dataset", "prompt", "mode", "status", "srcc"]
    assert {"paper_srcc", "paper_plcc", "source", "srcc_diff", "parameters", "parameters_448"} <= set(padding.columns)
    kadid = padding[padding["experiment"] == "4"]
    assert set(kadid["status"]) == {"finished"} and sorted(kadid["paper_srcc"]) == [0.910, 0.932]
    run_srcc = json.loads((executed / "runs" / "exp_04_kadid_padding_30px_add" / "test.json").read_text())["srcc"]
    assert kadid["srcc"].tolist() == pytest.approx([run_srcc] * 2)
    assert padding[padding["experiment"] == "zero-shot"]["dataset"].tolist() == ["kadid"]
    prompt_types = read_table(executed, "table_prompt_types.csv")
    assert {"zero-shot", "4", "10", "19"} <= set(prompt_types["experiment"])  # the baseline row included
    assert prompt_types.loc[prompt_types["experiment"] == "19", "paper_srcc"].isna().all()  # not published
    add_mul = read_table(executed, "table_add_vs_mul.csv")
    assert add_mul["experiment_mul"].tolist() == [22, 25, 31] and add_mul["srcc_mul"].isna().all()


def test_figures_are_valid_pngs(executed):
    from PIL import Image

    for name in FIGURES:
        with Image.open(executed / "figures" / f"{name}.png") as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100, name


def test_live_curves_and_gallery_widgets_ran_headlessly(executed):
    training = nbformat.read(executed / "notebooks" / "02_train_padding.ipynb", as_version=4)
    images = [o for cell in training.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the live plot and the static curves
    gallery = nbformat.read(executed / "notebooks" / "06_prompt_gallery.ipynb", as_version=4)
    last = [cell for cell in gallery.cells if cell.cell_type == "code"][-1]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in last.outputs)
    state = gallery.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    pictures = [model for model in state.values() if model["model_name"] == "ImageModel"]
    assert len(pictures) == 1 and pictures[0]["buffers"][0]["path"] == ["value"]  # the gallery drew headlessly


def test_gallery_widgets_redraw_for_every_control(executed, monkeypatch, capsys):
    pytest.importorskip("ipywidgets")
    from vpkit import plots

    runs = sorted((executed / "runs").iterdir())
    assert plots.prompt_gallery(runs) is None  # outside Jupyter: no widgets, says why
    assert "needs Jupyter" in capsys.readouterr().out
    monkeypatch.setattr(plots, "in_notebook", lambda: True)
    drawn = []
    draw = plots.view_figure
    monkeypatch.setattr(plots, "view_figure", lambda views, title: drawn.append((title, views)) or draw(views, title))
    box = plots.prompt_gallery(runs)
    (run, epoch), (image, amplify), picture = box.children[0].children, box.children[1].children, box.children[2]
    assert Path(image.value).is_file() and epoch.options == ("best", "epoch 1")
    amplify.value = 30.0
    epoch.value = "epoch 1"
    image.index = 2
    run.value = runs[1]
    first, second = runs[0].name, runs[1].name
    # drawn at once, then exactly once per change
    assert [title for title, _ in drawn] == [f"{first}, best", f"{first}, best", f"{first}, epoch 1",
                                             f"{first}, epoch 1", f"{second}, best"]
    views = drawn[-1][1]
    assert list(views) == ["prompt", "amplified", "image", "prompted"]
    assert all(pixels.shape == (224, 224, 3) for pixels in views.values())
    assert bytes(picture.value).startswith(b"\x89PNG")
