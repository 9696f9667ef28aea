"""vpkit.tables (and the table figures of vpkit.plots) on run folders fabricated with vpkit.runs' writers."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vpkit import tables
from vpkit.config import paper_config, resolve_for_model
from vpkit.runs import TEST_FILE, RunState, write_config, write_json_atomic, write_metrics, write_state

PAPER_CSV = Path(__file__).resolve().parents[1] / "data" / "paper_results.csv"


def fake_run(runs_dir: Path, number: int, srcc: float, plcc: float, finished: bool = True) -> Path:
    """A run folder as vpkit.train leaves it, for the tiny 224 px model, without training."""
    config = paper_config(number).with_overrides({"model": {"name_or_path": "tiny-random"},
                                                  "train": {"epochs": 2}})
    config, _ = resolve_for_model(config, 224, "cpu")
    run = runs_dir / config.name
    run.mkdir(parents=True)
    write_config(run, config)
    write_metrics(run, [{"epoch": epoch, "train_loss": 0.1 / epoch, "val_srcc": srcc - 0.1 / epoch,
                         "val_plcc": plcc, "best": epoch == 2} for epoch in (1, 2)])
    write_state(run, RunState(config_hash=config.hash(), epoch=2, best_epoch=2, best_selection=srcc,
                              finished=finished))
    if finished:
        write_json_atomic(run / TEST_FILE, {"srcc": srcc, "plcc": plcc, "krcc": srcc / 2, "best_epoch": 2})
    return run


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    fake_run(root, 4, 0.50, 0.55)   # kadid, padding 30 px, add
    fake_run(root, 22, 0.40, 0.42)  # kadid, padding 30 px, mul
    fake_run(root, 10, 0.30, 0.31)  # kadid, centre patch 30 px, add
    fake_run(root, 13, 0.20, 0.21, finished=False)  # kadid, top-left 10 px: stopped half way
    return root


@pytest.fixture
def paper():
    return tables.read_paper_results(PAPER_CSV)


def test_run_results_rows_status_metrics_and_parameters(runs_dir):
    results = tables.run_results(runs_dir).set_index("experiment")
    assert sorted(results.index) == [4, 10, 13, 22]
    assert results.loc[4, "status"] == "finished" and results.loc[13, "status"] == "partial"
    assert results.loc[4, "srcc"] == pytest.approx(0.50) and results.loc[22, "plcc"] == pytest.approx(0.42)
    assert np.isnan(results.loc[13, "srcc"])  # no test.json yet
    # 30 px at 448 -> 15 px at 224: 3 * (2*15*224 + 2*15*(224-30)); the paper's 448 px count is 150,480
    assert results.loc[4, "parameters"] == 3 * (2 * 15 * 224 + 2 * 15 * 194)
    assert results.loc[4, "parameters_448"] == 150_480
    assert results.loc[10, "parameters"] == 3 * 15 * 15 and results.loc[10, "parameters_448"] == 3 * 30 * 30


def test_run_results_of_an_empty_folder(tmp_path):
    assert tables.run_results(tmp_path).empty


def test_padding_table_beside_every_reported_source_and_zero_shot(runs_dir, paper):
    zero_shot = pd.DataFrame({"dataset": ["kadid"], "score_type": ["good+fine_vs_poor+bad"], "srcc": [0.1],
                              "plcc": [0.12]})
    table = tables.padding_table(tables.run_results(runs_dir), paper, zero_shot)
    assert list(table["experiment"]) == ["zero-shot", 4, 4, 5, 5, 6, 6]  # one row per reporting source
    zero = table.iloc[0]
    assert zero["srcc"] == pytest.approx(0.1) and zero["parameters"] == 0 and pd.isna(zero["paper_srcc"])
    ours = table[table["experiment"] == 4]
    assert sorted(ours["paper_srcc"]) == pytest.approx([0.910, 0.932])
    assert ours["srcc_diff"].tolist() == pytest.approx([0.50 - s for s in ours["paper_srcc"]])
    from_paper = ours[ours["source"].str.startswith("the paper")].iloc[0]
    assert pd.isna(from_paper["paper_plcc"]) and pd.isna(from_paper["plcc_diff"])  # not published there
    readme = ours[ours["source"].str.contains("README")].iloc[0]
    assert readme["plcc_diff"] == pytest.approx(0.55 - 0.905)
    koniq = table[table["experiment"] == 5]
    assert set(koniq["status"]) == {"not run"} and koniq["srcc"].isna().all()


def test_prompt_type_table_holds_addition_runs_and_reported_numbers_only(runs_dir, paper):
    table = tables.prompt_type_table(tables.run_results(runs_dir), paper)
    assert set(table["experiment"]) == {4, 5, 6, 10, 13}
    assert set(table["mode"]) == {"add"}
    centre = table[table["experiment"] == 10].iloc[0]
    assert centre["prompt"] == "centre patch 30 px" and pd.isna(centre["paper_srcc"])  # never invented
    grid = tables.srcc_grid(table)
    assert grid.loc["padding 30 px", "kadid"] == pytest.approx(0.50)
    assert np.isnan(grid.loc["padding 30 px", "koniq"])


def test_prompt_type_table_and_grid_put_the_zero_shot_baseline_first(runs_dir, paper):
    zero_shot = pd.DataFrame({"dataset": ["kadid", "koniq"], "score_type": ["good+fine_vs_poor+bad"] * 2,
                              "srcc": [0.1, 0.2], "plcc": [0.15, 0.25]})
    table = tables.prompt_type_table(tables.run_results(runs_dir), paper, zero_shot)
    assert set(table["experiment"]) == {"zero-shot", 4, 5, 6, 10, 13}
    grid = tables.srcc_grid(table)
    assert grid.index[0] == "none (zero-shot)"
    assert grid.loc["none (zero-shot)"].tolist()[:2] == pytest.approx([0.1, 0.2])
    assert grid.loc["padding 30 px", "kadid"] == pytest.approx(0.50)


def test_add_vs_mul_pairs_each_mul_with_its_add(runs_dir, paper):
    table = tables.add_vs_mul_table(tables.run_results(runs_dir), paper).set_index("experiment_mul")
    assert sorted(table.index) == [22, 25]  # pairs with a run: padding 30 (4/22), centre patch 30 (10/25)
    padding = table.loc[22]
    assert padding["experiment_add"] == 4 and padding["prompt"] == "padding 30 px" and padding["size"] == 30
    assert padding["srcc_mul_minus_add"] == pytest.approx(0.40 - 0.50)
    assert padding["paper_srcc_add"] == pytest.approx(0.932) and pd.isna(padding["paper_srcc_mul"])
    assert pd.isna(table.loc[25, "srcc_mul"]) and table.loc[25, "srcc_add"] == pytest.approx(0.30)


def test_written_and_displayed_tables_say_n_a(runs_dir, paper, tmp_path):
    table = tables.padding_table(tables.run_results(runs_dir), paper)
    path = tables.write_table(table, tmp_path / "out" / "padding.csv")
    text = path.read_text()
    assert "n/a" in text and "nan" not in text.lower().replace("n/a", "")
    assert [p.name for p in path.parent.iterdir()] == ["padding.csv"]  # no temp file left behind
    again = pd.read_csv(path, na_values=["n/a"])
    assert again["paper_srcc"].tolist() == pytest.approx(table["paper_srcc"].tolist(), nan_ok=True)
    shown = tables.display_table(table)
    assert shown.loc[shown["experiment"] == 5, "srcc"].tolist() == ["n/a", "n/a"]
    assert shown.loc[shown["experiment"] == 5, "parameters"].tolist() == ["n/a", "n/a"]


def test_paper_results_need_a_source_per_row(tmp_path):
    bad = tmp_path / "paper_results.csv"
    bad.write_text("experiment,dataset,prompt,size,mode,srcc,plcc,parameters_reported,source\n"
                   "4,kadid,padding,30,add,0.9,,,\n")
    with pytest.raises(ValueError, match=r"paper_results.csv, line 2: column 'source' is empty"):
        tables.read_paper_results(bad)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        tables.read_paper_results(tmp_path / "missing.csv")


def test_zero_shot_file_missing_is_an_error_or_none(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="01_zero_shot"):
        tables.read_zero_shot(tmp_path / "zero_shot.csv")
    assert tables.read_zero_shot(tmp_path / "zero_shot.csv", missing_ok=True) is None
    assert "no zero-shot rows" in capsys.readouterr().out


def test_table_figures_are_png_files_even_without_runs(runs_dir, paper, tmp_path):
    from PIL import Image

    from vpkit import plots

    results = tables.run_results(runs_dir)
    empty = tables.run_results(tmp_path / "none")
    figures = {
        "bars.png": plots.comparison_bars(tables.padding_table(results, paper)),
        "heat.png": plots.srcc_heatmap(tables.srcc_grid(tables.prompt_type_table(results, paper))),
        "modes.png": plots.add_mul_bars(tables.add_vs_mul_table(results, paper)),
        "empty_heat.png": plots.srcc_heatmap(tables.srcc_grid(tables.prompt_type_table(empty, paper))),
        "empty_modes.png": plots.add_mul_bars(tables.add_vs_mul_table(empty, paper)),
        "curves.png": plots.training_curves(sorted(runs_dir.iterdir())),
    }
    for name, fig in figures.items():
        path = plots.publish(fig, tmp_path / "figures" / name)
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100, name
