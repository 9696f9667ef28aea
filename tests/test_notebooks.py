"""The notebooks: committed clean, parameterised for papermill, and, executed headlessly through
`vpkit reproduce` with tiny settings, producing the run folders, tables and figures they promise."""
import ast
import json
import os
import re
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from vpkit import plan, provenance, reproduce
from vpkit.resources import PROJECT_ROOT_VARIABLE, project_path, project_root

NOTEBOOKS = sorted(reproduce.NOTEBOOKS_DIR.glob("*.ipynb"))
EXPERIMENTS = [4, 10, 19]  # one per family: padding, centre patch, full overlay (all KADID)
# and the paper's 30 px padding mul (22) with vpkit's fix of it, as the demo trains them
MUL, MUL_RESIDUAL = "exp_22_kadid_padding_30px_mul", "exp_22_kadid_padding_30px_mul_residual"
FIGURES = ("00_mos_histograms", "00_examples", "01_zero_shot_score_types", "02_padding_curves",
           "03_patch_curves", "04_full_curves", "05_padding_vs_paper", "05_prompt_types", "05_add_vs_mul",
           "06_prompt_gallery")
TEST_PROFILE = """
description: notebook test, tiny everything
required: []
parameters:
  model: tiny-random
  data_root: demo
  experiments: [4, 22, 10, 19]
  mul_residual: [22]
  epochs: 1
  batch_size: 16
  lr: null
  limit: 16
  device: cpu
  seed: 42
  extra_seeds: {4: [1]}
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
    assert [node.targets[0].id for node in assignments] == list(plan.PARAMETERS)
    # literals only (papermill overrides them), and themselves valid parameters
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in assignments}
    plan.check_parameters(values, path.name)


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
    generate(out / plan.DEMO_DATA_FOLDER, n_refs=5, distortions=["jpeg", "pixelate", "brighten", "darken"],
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
    from vpkit.runs import read_config

    runs = sorted(p.name for p in (executed / "runs").iterdir())
    assert runs == ["exp_04_kadid_padding_30px_add", "exp_04_kadid_padding_30px_add_seed1",
                    "exp_10_kadid_center_patch_30px_add", "exp_19_kadid_full_add", MUL, MUL_RESIDUAL]
    assert read_config(executed / "runs" / "exp_04_kadid_padding_30px_add_seed1").train.seed == 1
    fix = read_config(executed / "runs" / MUL_RESIDUAL)
    assert (fix.number, fix.prompt.mode, read_config(executed / "runs" / MUL).prompt.mode) == (22, "mul_residual", "mul")
    padding = nbformat.read(executed / "notebooks" / "02_train_padding.ipynb", as_version=4)
    shown = [o for cell in padding.cells if "mul_residual_variants" in cell.source for o in cell.outputs]
    assert shown[0]["data"]["text/plain"] == "([4, 22], [22])"  # the padding notebook trained the variant
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
    # each number beside the paper's and the difference first, where a narrow notebook still shows them
    assert padding.columns.tolist()[:8] == ["experiment", "dataset", "prompt", "mode", "status", "srcc", "paper_srcc",
                                            "srcc_diff"]
    assert {"paper_srcc", "paper_plcc", "source", "paper_table", "srcc_diff", "plcc_diff", "parameters",
            "parameters_448"} <= set(padding.columns)
    kadid = padding[padding["experiment"] == "4"]
    assert kadid["status"].tolist() == ["finished"] and kadid[["paper_srcc", "paper_plcc"]].iloc[0].tolist() == [0.932, 0.929]
    run_srcc = json.loads((executed / "runs" / "exp_04_kadid_padding_30px_add" / "test.json").read_text())["srcc"]
    assert kadid["srcc"].tolist() == pytest.approx([run_srcc])  # the paper's seed, not the mean
    seed_srcc = json.loads((executed / "runs" / "exp_04_kadid_padding_30px_add_seed1" / "test.json").read_text())["srcc"]
    assert kadid["seeds"].tolist() == ["42, 1"]
    assert kadid[["srcc_mean", "srcc_min", "srcc_max"]].iloc[0].tolist() == pytest.approx(
        [(run_srcc + seed_srcc) / 2, min(run_srcc, seed_srcc), max(run_srcc, seed_srcc)])
    assert kadid["srcc_diff"].tolist() == pytest.approx([run_srcc - 0.932])
    assert padding[padding["experiment"] == "zero-shot"]["dataset"].tolist() == ["kadid"]
    prompt_types = read_table(executed, "table_prompt_types.csv")
    assert {"zero-shot", "4", "10", "19"} <= set(prompt_types["experiment"])  # the baseline row included
    assert set(prompt_types["experiment"]) == {"zero-shot", *map(str, range(1, 22))}  # every published number
    assert prompt_types.loc[prompt_types["experiment"] == "19", "paper_srcc"].tolist() == [0.887]
    assert prompt_types.loc[prompt_types["experiment"] == "20", "status"].tolist() == ["not run"]
    add_mul = read_table(executed, "table_add_vs_mul.csv")
    assert add_mul["experiment_mul"].tolist() == [22, 25, 31] and add_mul["srcc_mul"][1:].isna().all()
    test_srcc = {name: json.loads((executed / "runs" / name / "test.json").read_text())["srcc"]
                 for name in (MUL, MUL_RESIDUAL)}
    assert add_mul[["srcc_mul", "srcc_mul_residual"]].iloc[0].tolist() == pytest.approx([test_srcc[MUL],
                                                                                         test_srcc[MUL_RESIDUAL]])
    assert add_mul["run_mul_residual"].tolist()[0] == MUL_RESIDUAL and add_mul["srcc_mul_residual"][1:].isna().all()
    assert add_mul["paper_srcc_mul"].isna().all() and add_mul["paper_srcc_add"].tolist() == [0.932, 0.806, 0.887]
    methods = read_table(executed, "table_methods.csv")
    assert "Q-Align" in set(methods["method"]) and methods.iloc[-1]["srcc_kadid"] == pytest.approx(run_srcc)


def test_the_tables_notebook_shows_what_ran_in_columns_that_fit(executed):
    """05 shows the experiments that ran in a few short columns and says in one line how many paper experiments
    were not run and that the CSV (which the test above reads) has every row and column."""
    from vpkit import tables

    notebook = nbformat.read(executed / "notebooks" / "05_tables.ipynb", as_version=4)
    cell = next(cell for cell in notebook.cells if "tables.display_table(prompt_types" in cell.source)
    html = next(o for o in cell.outputs if "text/html" in o.get("data", {}))["data"]["text/html"]
    headers = [re.sub(r"<[^>]+>", "", header) for header in re.findall(r"<th [^>]*>(.*?)</th>", html)]
    assert headers == list(tables.COMPARE_VIEW.values())
    shown = [re.sub(r"<[^>]+>", "", row.split("</td>")[0]).strip() for row in html.split("<tr>")[2:]]
    assert shown == ["zero-shot", "4", "10", "19"]  # the rows that ran, not the 18 not run
    assert ("Not shown: 18 of the 22 rows (paper experiments not run here); the columns mode, status, plcc_diff, "
            "parameters_448, paper_parameters, source, paper_table. table_prompt_types.csv has every row and column."
            ) in html.replace("<wbr>", "")
    written = read_table(executed, "table_prompt_types.csv")
    assert len(written) == 22 and (written["status"] == "not run").sum() == 18
    add_mul = next(cell for cell in notebook.cells if "tables.display_table(add_mul" in cell.source)
    html = next(o for o in add_mul.outputs if "text/html" in o.get("data", {}))["data"]["text/html"]
    headers = [re.sub(r"<[^>]+>", "", header) for header in re.findall(r"<th [^>]*>(.*?)</th>", html)]
    assert headers == list(tables.ADD_MUL_VIEW.values())
    assert "table_add_vs_mul.csv has every row and column" in html.replace("<wbr>", "")


def test_figures_are_valid_pngs(executed):
    from PIL import Image

    for name in FIGURES:
        with Image.open(executed / "figures" / f"{name}.png") as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100, name


def test_executed_notebooks_read_as_a_record_without_widgets(executed):
    """Run headlessly, a notebook keeps what a reader can see: progress as text that finished (not widget bars
    frozen at 0%), the live curves drawn, and in place of the gallery widget one sentence (the static gallery
    above it is the record)."""
    for path in NOTEBOOKS:
        notebook = nbformat.read(executed / "notebooks" / path.name, as_version=4)
        widgets = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
                   if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert not widgets, path.name
        reprs = [o["data"]["text/plain"] for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
                 if o.output_type == "execute_result" and "text/plain" in o.get("data", {})]
        assert not [text for text in reprs if text.startswith("PosixPath(")], path.name  # a figure, not its path
    training = nbformat.read(executed / "notebooks" / "02_train_padding.ipynb", as_version=4)
    images = [o for cell in training.cells if cell.cell_type == "code" for o in cell.outputs
              if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the live plot and the static curves
    cell = next(cell for cell in training.cells if "run_experiments" in cell.source)
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    finished = [line for line in text.replace("\r", "\n").splitlines() if "100%|" in line]
    assert any(line.startswith("exp_04_kadid_padding_30px_add: 100%|") for line in finished), text[-2000:]
    gallery = nbformat.read(executed / "notebooks" / "06_prompt_gallery.ipynb", as_version=4)
    last = [cell for cell in gallery.cells if cell.cell_type == "code"][-1]
    said = [o["text"] for o in last.outputs if o.output_type == "stream"]
    assert said == [("The interactive gallery needs a live Jupyter kernel (open this notebook in JupyterLab and "
                     "run it); the static gallery above shows the same prompts.\n")]
    assert all(o.output_type == "stream" for o in last.outputs)


def test_gallery_widgets_redraw_for_every_control(executed, monkeypatch, capsys):
    pytest.importorskip("ipywidgets")
    from vpkit import plots

    runs = sorted((executed / "runs").iterdir())
    assert plots.prompt_gallery(runs) is None  # outside Jupyter: no widgets, says why
    assert "needs a live Jupyter kernel" in capsys.readouterr().out
    monkeypatch.setattr(plots, "live_frontend", lambda: True)
    drawn = []
    draw = plots.view_figure
    monkeypatch.setattr(plots, "view_figure",
                        lambda views, title, *note: drawn.append((title, views)) or draw(views, title, *note))
    box = plots.prompt_gallery(runs)
    run, (epoch, image), (auto, amplify), picture = box.children[0], box.children[2].children, \
        box.children[3].children, box.children[4]
    assert Path(image.value).is_file() and epoch.options == ("best", "epoch 1")
    auto.value = False
    amplify.value = 30.0
    epoch.value = "epoch 1"
    image.index = 2
    shown_image = image.value
    run.value = runs[1]
    first, second = runs[0].name, runs[1].name
    # drawn at once, then exactly once per change; switching runs keeps the epoch and the image
    assert [title for title, _ in drawn] == [f"{first}, best", f"{first}, best", f"{first}, best",
                                             f"{first}, epoch 1", f"{first}, epoch 1", f"{second}, epoch 1"]
    assert (epoch.value, image.index, image.value) == ("epoch 1", 2, shown_image)
    assert (auto.value, amplify.value) == (False, 30.0)
    views = drawn[-1][1]
    assert list(views) == ["prompt", "amplified x30", "image", "prompted"]
    assert all(pixels.shape == (224, 224, 3) for pixels in views.values())
    assert bytes(picture.value).startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- after `vpkit reproduce --profile demo`


def parameters_cell(path: Path) -> dict:
    first = next(cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    return {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(first.source).body
            if isinstance(node, ast.Assign)}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_default_parameters_are_the_demo_profiles(path):
    """Opened in Jupyter after `vpkit reproduce --profile demo` (README's first command, from the repository
    root), a notebook's defaults name exactly that run: same settings, same experiments, same folder."""
    defaults = parameters_cell(path)
    profile = reproduce.load_profile("demo")
    demo = reproduce.profile_parameters(profile, {}, project_root() / "reproduce" / profile.name)
    shown = plan.check_parameters({k: v for k, v in defaults.items() if k not in plan.OUTPUT_PARAMETERS},
                                       path.name)
    assert shown == {k: v for k, v in demo.items() if k not in plan.OUTPUT_PARAMETERS}
    # relative to the project, wherever Jupyter or papermill starts; figures follow out_dir
    assert project_path(defaults["out_dir"]) == Path(demo["out_dir"]) and defaults["figures_dir"] is None


def fabricate_finished_runs(out_dir: Path, numbers, mode: str | None = None, seed: int | None = None,
                            **changes) -> list[Path]:
    """Finished run folders as `vpkit reproduce --profile demo` leaves them (config, metrics, state, test
    result, prompts), for the notebooks' default parameters with `changes`, without training; with `mode`,
    the experiments' variants in that prompt mode."""
    from vpkit.atomic import write_json_atomic
    from vpkit.config import resolve_for_model
    from vpkit.prompters import build_prompter
    from vpkit.runs import (
        BEST_CHECKPOINT,
        TEST_FILE,
        RunState,
        epoch_checkpoint_name,
        prompt_checkpoint_metadata,
        save_prompt_checkpoint,
        write_config,
        write_metrics,
        write_state,
    )

    values = {**parameters_cell(NOTEBOOKS[2]), "out_dir": str(out_dir), "figures_dir": str(out_dir / "figures"),
              **changes}
    settings = reproduce.notebook_settings(progress=False, **values)
    runs = []
    for number in numbers:
        config, _ = resolve_for_model(plan.experiment_config(number, settings, mode, seed), 224, "cpu")
        run = settings.runs_dir / config.name
        run.mkdir(parents=True)
        provenance.write_record(run, "training", [])
        write_config(run, config)
        write_metrics(run, [{"epoch": e, "train_loss": 0.1 / e, "val_srcc": 0.2 + 0.01 * e, "val_plcc": 0.2,
                             "best": e == 3} for e in (1, 2, 3)])
        prompt = config.prompt
        prompter = build_prompter(prompt.type, size=prompt.size, mode=prompt.mode, delta=prompt.delta,
                                  is_center=prompt.is_center, image_size=prompt.image_size)
        metadata = prompt_checkpoint_metadata(config, prompter, 3, {"val_srcc": 0.23})
        for name in (epoch_checkpoint_name(3), BEST_CHECKPOINT):
            save_prompt_checkpoint(run / name, prompter.state_dict(), metadata)
        write_json_atomic(run / TEST_FILE, {"srcc": 0.25, "plcc": 0.3, "krcc": 0.2, "best_epoch": 3})
        write_state(run, RunState(config_hash=config.hash(), epoch=3, best_epoch=3, best_selection=0.23,
                                  finished=True))
        runs.append(run)
    return runs


@pytest.fixture
def after_demo(tmp_path, monkeypatch):
    """A project (VPKIT_PROJECT_ROOT, which kernels inherit) with a copy of notebooks/02 and reproduce/demo/,
    holding a small demo set (where data_root="demo" looks)."""
    from vpkit.data.synth import generate

    monkeypatch.setenv(PROJECT_ROOT_VARIABLE, str(tmp_path))
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    source = NOTEBOOKS[2]  # 02_train_padding
    (notebooks / source.name).write_bytes(source.read_bytes())
    out_dir = tmp_path / parameters_cell(source)["out_dir"]
    generate(out_dir / plan.DEMO_DATA_FOLDER, n_refs=5, distortions=["jpeg", "pixelate", "brighten", "darken"],
             levels=(1, 3, 5), size=(96, 72), progress=False, workers=1)
    return notebooks / source.name, out_dir


def test_a_notebook_with_its_defaults_reuses_the_demos_runs_wherever_it_is_started(after_demo, tmp_path):
    papermill = pytest.importorskip("papermill")
    notebook, out_dir = after_demo
    runs = fabricate_finished_runs(out_dir, [4, 22]) + fabricate_finished_runs(out_dir, [22], "mul_residual") + \
        fabricate_finished_runs(out_dir, [4], seed=1) + fabricate_finished_runs(out_dir, [4], seed=2)
    before = {run: (run / "state.json").read_bytes() for run in runs}
    executed = notebook.parent / "executed.ipynb"
    elsewhere = tmp_path / "elsewhere"  # not the notebook's folder: relative defaults still mean the project's
    elsewhere.mkdir()
    papermill.execute_notebook(str(notebook), str(executed), kernel_name=reproduce.KERNEL_NAME, progress_bar=False,
                               cwd=str(elsewhere), extra_arguments=reproduce.KERNEL_ARGUMENTS)  # defaults only
    assert {run: (run / "state.json").read_bytes() for run in runs} == before  # reused, not retrained
    cells = nbformat.read(executed, as_version=4).cells
    text = json.dumps(cells[-1].outputs)
    assert "exp_04_kadid_padding_30px_add" in text and re.search(rf"{MUL}\b", text) and MUL_RESIDUAL in text
    assert (out_dir / "figures" / "02_padding_curves.png").is_file()
    assert list(elsewhere.iterdir()) == []  # nothing made where it was started
    training = next(cell for cell in cells if "run_experiments" in cell.source)
    said = "".join(o.get("text", "") for o in training.outputs if o.output_type == "stream")
    assert said.count("trained earlier with these settings, reused") == 5 and "--overwrite" not in said


def test_a_run_of_other_settings_is_named_as_the_option_to_change_under_vpkit_reproduce(after_demo):
    """Run by `vpkit reproduce`, the notebook's refusal names the command-line options (a notebook opened by
    hand names its parameters cell: test_reproduce.py, test_a_finished_run_with_other_settings_is_refused)."""
    pytest.importorskip("papermill")
    notebook, out_dir = after_demo
    fabricate_finished_runs(out_dir, [4], limit=64)  # as the notebooks' old defaults left it
    executed = notebook.parent / "executed.ipynb"
    with pytest.raises(reproduce.ReproduceError) as error:
        reproduce.run_notebook(notebook, executed, {})
    message = str(error.value)
    assert "RunSettingsError" in message and "exp_04_kadid_padding_30px_add" in message
    assert "--limit 64 there, 800 now" in message
    assert "give --limit 64" in message and "give another --out" in message
    assert "parameters cell" not in message and "--overwrite" not in message
    outputs = [o for cell in nbformat.read(executed, as_version=4).cells if cell.cell_type == "code"
               for o in cell.outputs if o.output_type == "error"]
    assert len(outputs) == 1
    assert outputs[0]["traceback"] == [f"RunSettingsError: {outputs[0]['evalue']}"]  # no library traceback
    assert plan.CALLER_VARIABLE not in os.environ  # set for the kernel only


# ----------------------------------------------------------------------------- live curves and gallery, headless


def test_live_curves_are_labelled_before_the_first_epoch_and_count_whole_epochs():
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    from vpkit import plots

    curves = plots.LiveCurves()
    assert [ax.get_xlabel() for ax in curves.axes] == ["epoch", "epoch"]
    assert [ax.get_ylabel() for ax in curves.axes] == [label for _, label in plots.CURVE_METRICS]
    assert isinstance(curves.fig.get_layout_engine(), ConstrainedLayoutEngine)  # the two panels never overlap
    record = curves.for_run("exp_04")
    for epoch in (1, 2, 3):
        record({"epoch": epoch, "train_loss": 0.1 / epoch, "val_srcc": 0.2 + 0.01 * epoch})
    for ax in curves.axes:
        assert ax.get_xlabel() == "epoch"
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks == [1, 2, 3], ticks  # no 1.25, 1.5, ...


def test_gallery_says_why_mul_is_black_and_puts_mul_residual_beside_it(after_demo, monkeypatch):
    from vpkit import plots

    _, out_dir = after_demo
    add, mul = fabricate_finished_runs(out_dir, [4, 22])
    (residual,) = fabricate_finished_runs(out_dir, [22], "mul_residual")  # as the demo's padding notebook trains it
    assert residual.name == MUL_RESIDUAL
    assert plots.gallery_order([residual, mul, add]) == [add, mul, residual]
    fig = plots.gallery_figure([residual, mul, add], examples=1)
    rows = fig.subfigs
    assert [row._suptitle.get_text().split(":")[0] for row in rows] == [add.name, mul.name, residual.name]
    note = rows[1]._supxlabel.get_text().replace("\n", " ")
    assert "multiplies each pixel by the prompt itself" in note
    assert re.search(r": 0 outside the prompt's region and typically 0\.0\d inside it here \(at most 0\.\d\d\), so a "
                     r"typical pixel keeps \d% of its brightness", note)
    fix = rows[2]._supxlabel.get_text().replace("\n", " ")  # the fix, just below, says what it does
    assert re.fullmatch(r"mul_residual \(vpkit's fix, not a paper experiment\) multiplies each pixel by 1 \+ prompt: "
                        r"1 outside the prompt's region, so the image stays, and 0\.9\d to 1\.0\d inside it here\.", fix)
    assert rows[1]._supxlabel.get_color() == "darkred" and rows[2]._supxlabel.get_color() == "darkgreen"
    assert rows[0]._supxlabel is None
    assert rows[1]._suptitle.get_text().endswith(", mul") and rows[2]._suptitle.get_text().endswith(", mul_residual")

    pytest.importorskip("ipywidgets")
    monkeypatch.setattr(plots, "live_frontend", lambda: True)
    titles = []
    draw = plots.view_figure
    monkeypatch.setattr(plots, "view_figure", lambda views, title, *rest: titles.append(title) or draw(views, title,
                                                                                                         *rest))
    box = plots.prompt_gallery([residual, add, mul])
    run, about, (auto, amplify), picture, note = box.children[0], box.children[1], box.children[3].children, \
        box.children[4], box.children[5]
    assert [label for label, _ in run.options] == [add.name, mul.name, residual.name]
    # what the run is, on a line of its own that wraps; a generated set is not called KADID-10k
    assert about.value == "synthetic demo set (KADID-10k layout), padding 15 px (at 224 px), add"
    assert run.layout.width == "auto" and run.style.description_width == "initial"  # no 4 px overflow
    assert auto.value and amplify.disabled  # "auto" amplification by default, as the text says
    from vpkit.evaluate import load_trained_prompt
    from vpkit.prompters import auto_amplification

    chosen = auto_amplification(load_trained_prompt(add / "best.safetensors").prompter)
    assert amplify.value == pytest.approx(chosen)  # the slider shows the factor auto chose
    auto.value = False
    assert not amplify.disabled
    run.value = mul
    assert about.value.endswith(", mul")
    assert titles[0] == f"{add.name}, best" and titles[-1] == f"{mul.name}, best"
    # the note is text below the picture (a scaled picture would shrink it), in the static gallery's colour
    assert note.value.startswith('<span style="color: darkred">mul (the paper&#x27;s mode) multiplies each pixel')
    assert "mul_residual" in note.value
    run.value = residual
    assert titles[-1] == f"{residual.name}, best"
    assert note.value.startswith('<span style="color: darkgreen">mul_residual (vpkit&#x27;s fix')
    run.value = add
    assert note.value == ""  # add needs no explanation
    assert bytes(picture.value).startswith(b"\x89PNG")


# ----------------------------------------------------------------------------- paths, headless


def test_relative_paths_mean_the_projects_folders_and_figures_follow_out_dir(tmp_path, monkeypatch):
    (tmp_path / "project" / "data").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv(PROJECT_ROOT_VARIABLE, str(tmp_path / "project"))
    values = {**parameters_cell(NOTEBOOKS[0]), "out_dir": "reproduce/limit64", "data_root": "data"}
    settings = reproduce.notebook_settings(progress=False, **values)
    assert settings.out_dir == tmp_path / "project" / "reproduce" / "limit64"
    assert settings.figures_dir == settings.out_dir / "figures"  # not the demo's figures
    assert settings.data_root == tmp_path / "project" / "data" and list(elsewhere.iterdir()) == []
    chosen = reproduce.notebook_settings(progress=False, **{**values, "figures_dir": "figs"})
    assert chosen.figures_dir == tmp_path / "project" / "figs"


def test_the_project_of_a_clone_is_its_root(monkeypatch, tmp_path):
    monkeypatch.delenv(PROJECT_ROOT_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert project_root() == Path(reproduce.__file__).resolve().parents[1]  # this checkout, not the cwd
    assert project_path("reproduce/demo") == project_root() / "reproduce" / "demo"


def test_a_notebook_that_shows_runs_fails_when_there_are_none(after_demo):
    _, out_dir = after_demo
    settings = reproduce.notebook_settings(progress=False, **{**parameters_cell(NOTEBOOKS[6]),
                                                              "out_dir": str(out_dir)})
    with pytest.raises(reproduce.ReproduceError, match=r"runs: no trained run of experiments \[4, 10, 16, 19, 22, "
                                                        r"25, 31\] here; run notebooks 02-04"):
        reproduce.trained_runs(settings)


def test_reused_runs_hand_their_recorded_epochs_to_the_live_curves(after_demo, capsys):
    _, out_dir = after_demo
    (run,) = fabricate_finished_runs(out_dir, [4])
    settings = reproduce.notebook_settings(progress=False, **{**parameters_cell(NOTEBOOKS[2]),
                                                              "out_dir": str(out_dir), "extra_seeds": {}})
    seen = []
    reproduce.run_experiments([4], settings, callback_for=lambda name: lambda row: seen.append((name, row["epoch"])))
    assert seen == [(run.name, 1), (run.name, 2), (run.name, 3)]
    assert f"{run.name}: trained earlier with these settings, reused (delete {run} to train it again)" \
        in capsys.readouterr().out


def test_a_large_figure_is_shown_as_a_jpeg_and_kept_as_a_png(tmp_path, monkeypatch):
    import IPython.display
    import numpy as np

    from vpkit import plots

    shown = []
    monkeypatch.setattr(plots, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", lambda item: shown.append(item))
    fig, axes = plots._new_figure(1, 1, 3, 3)
    axes[0, 0].imshow(np.random.default_rng(0).random((64, 64, 3)))
    small = plots.publish(fig, tmp_path / "small.png")
    monkeypatch.setattr(plots, "PREVIEW_LIMIT_BYTES", small.stat().st_size - 1)
    fig, axes = plots._new_figure(1, 1, 3, 3)
    axes[0, 0].imshow(np.random.default_rng(0).random((64, 64, 3)))
    large = plots.publish(fig, tmp_path / "large.png")
    assert [item.format for item in shown] == ["png", "jpeg"]
    assert large.read_bytes().startswith(b"\x89PNG") and shown[1].data.startswith(b"\xff\xd8")
