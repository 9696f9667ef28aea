"""vpkit.tables (and the table figures of vpkit.plots) on run folders fabricated with vpkit.runs' writers."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vpkit import provenance, tables
from vpkit.atomic import write_json_atomic
from vpkit.config import paper_config, resolve_for_model
from vpkit.runs import TEST_FILE, RunState, write_config, write_metrics, write_state

PAPER_CSV = tables.PAPER_RESULTS
# The paper's published description and results: the README.md of yahya-ben/mplug2-vp-for-nriqa at commit 4c56315,
# which vpkit/assets/paper_results.csv cites. The project does not ship it; VPKIT_PAPER_TEXT names a copy to check against.
PAPER_TEXT = Path(os.environ["VPKIT_PAPER_TEXT"]) if os.environ.get("VPKIT_PAPER_TEXT") else None
# "Performance Across Visual Prompt Types" as printed (KADID-10k, KonIQ-10k, AGIQA-3k SRCC), by vpkit's labels.
PUBLISHED_ADD_SRCC = {
    "padding 10 px": (0.880, 0.805, 0.802), "padding 30 px": (0.932, 0.852, 0.810),
    "centre patch 10 px": (0.390, 0.487, 0.435), "centre patch 30 px": (0.806, 0.647, 0.725),
    "top-left patch 10 px": (0.465, 0.551, 0.564), "top-left patch 30 px": (0.520, 0.635, 0.755),
    "full": (0.887, 0.693, 0.624),
}


def fake_run(runs_dir: Path, number: int, srcc: float, plcc: float, finished: bool = True,
             mode: str | None = None, seed: int | None = None) -> Path:
    """A run folder as vpkit.train leaves it, for the tiny 224 px model, without training (`mode`: the
    experiment in another prompt mode, as vpkit.reproduce trains a mul_residual variant; `seed`: trained with
    that extra seed, named as vpkit.reproduce names it)."""
    from vpkit.plan import seed_run_name

    config = paper_config(number, mode).with_overrides({"model": {"name_or_path": "tiny-random"},
                                                        "train": {"epochs": 2}})
    if seed is not None:
        config = config.with_overrides({"name": seed_run_name(config.name, seed), "train": {"seed": seed}})
    config, _ = resolve_for_model(config, 224, "cpu")
    run = runs_dir / config.name
    run.mkdir(parents=True)
    provenance.write_record(run, "training", [])
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


def test_padding_table_beside_the_published_srcc_and_plcc_and_zero_shot(runs_dir, paper):
    zero_shot = pd.DataFrame({"dataset": ["kadid"], "score_type": ["good+fine_vs_poor+bad"], "srcc": [0.1],
                              "plcc": [0.12]})
    table = tables.padding_table(tables.run_results(runs_dir), paper, zero_shot)
    assert list(table["experiment"]) == ["zero-shot", 4, 5, 6]  # one published source per experiment
    zero = table.iloc[0]
    assert zero["srcc"] == pytest.approx(0.1) and zero["parameters"] == 0 and pd.isna(zero["paper_srcc"])
    ours = table[table["experiment"] == 4].iloc[0]
    assert (ours["paper_srcc"], ours["paper_plcc"]) == pytest.approx((0.932, 0.929))
    assert (ours["srcc_diff"], ours["plcc_diff"]) == pytest.approx((0.50 - 0.932, 0.55 - 0.929))
    assert ours["paper_table"] == "Best Performance (30px Padding + Addition)"
    assert "4c56315a76c4b0c40cc3af725bbe8ffea64d40b0" in ours["source"] and ours["paper_parameters"] == "~600K"
    koniq = table[table["experiment"] == 5].iloc[0]
    assert koniq["status"] == "not run" and pd.isna(koniq["srcc"]) and pd.isna(koniq["srcc_diff"])
    assert (koniq["paper_srcc"], koniq["paper_plcc"]) == pytest.approx((0.852, 0.874))
    assert table.loc[table["experiment"] == 6, ["paper_srcc", "paper_plcc"]].iloc[0].tolist() == \
        pytest.approx([0.810, 0.860])


def test_prompt_type_table_holds_addition_runs_and_every_published_number(runs_dir, paper):
    table = tables.prompt_type_table(tables.run_results(runs_dir), paper)
    assert set(table["experiment"]) == set(range(1, 22))  # the 21 published + our runs (4, 10, 13 among them)
    assert set(table["mode"]) == {"add"}
    centre = table[table["experiment"] == 10].iloc[0]
    assert centre["prompt"] == "centre patch 30 px" and centre["paper_srcc"] == pytest.approx(0.806)
    assert centre["srcc_diff"] == pytest.approx(0.30 - 0.806) and pd.isna(centre["paper_plcc"])  # no PLCC published
    stopped = table[table["experiment"] == 13].iloc[0]
    assert stopped["status"] == "partial" and pd.isna(stopped["srcc_diff"]) and stopped["paper_srcc"] == 0.465
    grid = tables.srcc_grid(table)
    assert grid.loc["padding 30 px", "kadid"] == pytest.approx(0.50)
    assert np.isnan(grid.loc["padding 30 px", "koniq"])
    assert tables.srcc_grid(table, "srcc_diff").loc["centre patch 30 px", "kadid"] == pytest.approx(0.30 - 0.806)


def test_the_21_published_srccs_land_in_their_cells(paper):
    no_runs = tables.run_results(Path("/nonexistent"))
    table = tables.prompt_type_table(no_runs, paper)
    published = tables.srcc_grid(table, "paper_srcc")
    assert list(published.index) == list(PUBLISHED_ADD_SRCC)  # the paper's row order
    assert list(published.columns) == ["kadid", "koniq", "agiqa"]
    for prompt, values in PUBLISHED_ADD_SRCC.items():
        assert published.loc[prompt].tolist() == pytest.approx(list(values)), prompt
    assert tables.srcc_grid(table).isna().all().all()  # nothing measured: ours stays empty
    assert set(table["status"]) == {"not run"}


def test_mul_experiments_have_no_published_number(runs_dir, paper):
    mul = paper[(paper["kind"] == "experiment") & (paper["mode"] == "mul")]
    assert sorted(mul["experiment"]) == list(range(22, 34))  # said explicitly, row by row
    assert mul["srcc"].isna().all() and mul["plcc"].isna().all()
    assert mul["note"].str.startswith("not published").all()
    table = tables.add_vs_mul_table(tables.run_results(runs_dir), paper)
    assert table["paper_srcc_mul"].isna().all() and table["srcc_diff_mul"].isna().all()
    padding = table.set_index("experiment_mul").loc[22]
    assert padding["srcc_diff_add"] == pytest.approx(0.50 - 0.932)


def test_methods_table_is_the_published_comparison_with_our_runs(runs_dir, paper):
    table = tables.methods_table(paper, tables.run_results(runs_dir))
    sota = table[table["table"] == "Comparison with State-of-the-Art Methods"].set_index("method")
    assert list(sota.index) == ["Our Method", "Q-Align", "Q-Instruct", "LIQE", "MP-IQE", "MCPF-IQA", "Q-Adapt"]
    assert sota.loc["Q-Align", ["srcc_kadid", "srcc_koniq", "srcc_agiqa"]].tolist() == pytest.approx([0.919, 0.940, 0.727])
    assert sota.loc["Q-Align", "parameters"] == "7B" and pd.isna(sota.loc["LIQE", "srcc_agiqa"])  # "-" printed
    specialised = table[table["table"] == "Comparison with Specialized NR-IQA Models"].set_index("method")
    assert specialised.loc["TreS", "srcc_koniq"] == pytest.approx(0.928) and pd.isna(specialised.loc["MUSIQ", "srcc_kadid"])
    ours = table.iloc[-1]
    assert ours["table"] == "measured" and ours["srcc_kadid"] == pytest.approx(0.50) and pd.isna(ours["srcc_koniq"])
    assert len(tables.methods_table(paper)) == len(table) - 1


def _markdown_table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table under `### heading`, cells stripped of bold marks."""
    lines = text.split(f"### {heading}\n", 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    block = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        block.append([cell.strip().strip("*").strip() for cell in line.strip().strip("|").split("|")])
    return block[2:]  # after the header and the --- line


def _number(cell: str) -> float:
    return np.nan if cell in ("-", "") else float(cell)


@pytest.mark.skipif(PAPER_TEXT is None, reason="set VPKIT_PAPER_TEXT to a copy of the paper's text (README.md of "
                    "yahya-ben/mplug2-vp-for-nriqa at 4c56315a76c4b0c40cc3af725bbe8ffea64d40b0) to check "
                    "vpkit/assets/paper_results.csv against it")
def test_csv_agrees_with_the_papers_text(paper):
    from vpkit.config import PAPER_EXPERIMENTS
    from vpkit.vocabulary import SHAPES

    text = PAPER_TEXT.read_text(errors="replace")
    experiments = paper[paper["kind"] == "experiment"].set_index("experiment")
    position = {shape.paper_title: key for key, shape in SHAPES.items()}
    checked = 0
    for label, size, *srccs in _markdown_table(text, "Performance Across Visual Prompt Types"):
        size = None if size in ("—", "") or not size.endswith("px") else int(size[:-2])
        for dataset, cell in zip(("kadid", "koniq", "agiqa"), srccs):
            exp = next(e for e in PAPER_EXPERIMENTS if (e.position, e.size, e.dataset, e.mode)
                       == (position[label], size, dataset, "add"))
            assert experiments.loc[exp.number, "srcc"] == pytest.approx(float(cell)), (label, size, dataset)
            checked += 1
    assert checked == 21
    names = {"KADID-10k": 4, "KonIQ-10k": 5, "AGIQA-3k": 6}
    for dataset, srcc, plcc, parameters in _markdown_table(text, "Best Performance (30px Padding + Addition)"):
        row = experiments.loc[names[dataset]]
        assert (row["srcc"], row["plcc"], row["parameters_reported"]) == (float(srcc), float(plcc), parameters)
    methods = paper[paper["kind"] == "method"]
    for heading in ("Comparison with State-of-the-Art Methods", "Comparison with Specialized NR-IQA Models"):
        for method, *cells in _markdown_table(text, heading):
            srccs = cells[:3] if heading.endswith("Methods") else cells[:2]
            for dataset, cell in zip(("kadid", "koniq", "agiqa"), srccs):
                row = methods[(methods["table"] == heading) & (methods["method"] == method)
                              & (methods["dataset"] == dataset)]
                assert len(row) == 1, (heading, method, dataset)
                assert row["srcc"].iloc[0] == pytest.approx(_number(cell), nan_ok=True), (heading, method, dataset)
    assert "0.910" not in PAPER_CSV.read_text() and "52K" not in PAPER_CSV.read_text()  # the older README's numbers


def test_every_published_number_cites_the_papers_readme_at_its_commit_and_the_released_prompts(paper):
    for source in paper["source"]:
        assert source.startswith("yahya-ben/mplug2-vp-for-nriqa README.md at 4c56315a76c4b0c40cc3af725bbe8ffea64d40b0")
        assert "yahya007/mplug2-vp-for-nriqa" in source


def test_paper_results_rows_are_checked_against_the_experiments(tmp_path):
    header = ",".join(tables.PAPER_RESULTS_COLUMNS) + "\n"
    cases = {
        "experiment,4,,kadid,Padding,10,add,0.9,,,file.txt,Table,\n": r"line 2: dataset, prompt, size, mode .* do "
                                                                     r"not match experiment 4",
        "experiment,40,,kadid,Padding,30,add,0.9,,,file.txt,Table,\n": r"line 2: experiment 40; give the paper",
        "methods,,X,kadid,,,,0.9,,,file.txt,Table,\n": r"line 2: kind 'methods'; use one of experiment, method",
        "method,,X,kadid,,,,1.9,,,file.txt,Table,\n": r"line 2: srcc 1.9 is not a correlation",
        "method,,X,kadid,,,,0.9,,,file.txt,,\n": r"line 2: column 'table' is empty",
    }
    for row, message in cases.items():
        bad = tmp_path / "paper_results.csv"
        bad.write_text(header + row)
        with pytest.raises(ValueError, match=message):
            tables.read_paper_results(bad)


def test_prompt_type_table_and_grid_put_the_zero_shot_baseline_first(runs_dir, paper):
    zero_shot = pd.DataFrame({"dataset": ["kadid", "koniq"], "score_type": ["good+fine_vs_poor+bad"] * 2,
                              "srcc": [0.1, 0.2], "plcc": [0.15, 0.25]})
    table = tables.prompt_type_table(tables.run_results(runs_dir), paper, zero_shot)
    assert set(table["experiment"]) == {"zero-shot", *range(1, 22)}
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
    assert padding["srcc_diff_add"] == pytest.approx(0.50 - 0.932) and pd.isna(padding["srcc_diff_mul"])
    assert pd.isna(table.loc[25, "srcc_mul"]) and table.loc[25, "srcc_add"] == pytest.approx(0.30)


def test_written_and_displayed_tables_say_n_a(runs_dir, paper, tmp_path):
    table = tables.padding_table(tables.run_results(runs_dir), paper)
    path = tables.write_table(table, tmp_path / "out" / "padding.csv")
    text = path.read_text()
    assert "n/a" in text and "nan" not in text.lower().replace("n/a", "")
    assert [p.name for p in path.parent.iterdir()] == ["padding.csv"]  # no temp file left behind
    again = pd.read_csv(path, na_values=["n/a"])
    assert again["paper_srcc"].tolist() == pytest.approx(table["paper_srcc"].tolist(), nan_ok=True)
    shown = tables.display_values(table)
    assert shown.loc[shown["experiment"] == 5, "srcc"].tolist() == ["n/a"]
    assert shown.loc[shown["experiment"] == 5, "parameters"].tolist() == ["n/a"]
    assert shown.loc[shown["experiment"] == 5, "paper_srcc"].tolist() == ["0.852"]
    one_precision = tables.display_values(pd.DataFrame({"srcc": [0.81, 0.932, np.nan], "parameters": [37620.0, np.nan, 4.0]}))
    assert one_precision.to_dict("list") == {"srcc": ["0.810", "0.932", "n/a"], "parameters": ["37620", "n/a", "4"]}
    html = tables.display_table(pd.DataFrame({"note": ["x" * 120]})).to_html()
    assert "x" * 120 in html and "white-space: normal" in html  # wrapped, not cut at 50 characters
    headers = [cell.split(">")[-1] for cell in tables.display_table(table).to_html(exclude_styles=True).split("</th>")]
    assert [repr(tables.display_table(table)).splitlines()[2].split()[:2]] == [["exp.", "dataset"]]  # as text too
    assert "paper SRCC" in headers and "source" not in headers  # short headers; provenance only in the CSV
    generic = tables.display_table(pd.DataFrame({"name": ["a"], "run_name": ["b"], "model": ["tiny"]})).to_html()
    assert "run_<wbr>name" in generic and "Not shown: the column model." in generic  # a long name may wrap


def test_the_notebook_view_shows_the_runs_in_few_columns_and_says_what_the_csv_adds(runs_dir, paper, tmp_path):
    """A notebook shows the experiments that ran (and zero-shot) in a few short columns, ours beside the paper's
    number and the difference, with one line counting the experiments not run and naming what is left out: no CSS
    needed to fit (JupyterLab drops the style of a notebook it did not execute). The CSV keeps every row/column."""
    for seed, srcc in ((1, 0.40), (2, 0.60)):
        fake_run(runs_dir, 4, srcc, 0.5, seed=seed)
    zero_shot = pd.DataFrame({"dataset": ["kadid"], "srcc": [0.1], "plcc": [0.12]})
    results = tables.run_results(runs_dir)
    table = tables.prompt_type_table(results, paper, zero_shot)
    csv = tables.write_table(table, tmp_path / "table_prompt_types.csv")
    view, line, notes = tables.table_view(table, csv)
    assert notes is None
    assert list(view.columns) == list(tables.COMPARE_VIEW.values())
    assert view["exp."].tolist() == ["zero-shot", 4, 10, 13]
    assert view["SRCC"].tolist()[-1] == "partial" and view["paper SRCC"].tolist()[-1] == "0.465"  # stopped: said why
    assert view.loc[1, ["SRCC", "paper SRCC", "SRCC \u2212 paper"]].tolist() == ["0.500", "0.932", "-0.432"]
    assert view.loc[1, "seeds: SRCC mean [min, max]"] == f"{paper_config(4).train.seed}, 1, 2: 0.500 [0.400, 0.600]"
    assert view.loc[2, "seeds: SRCC mean [min, max]"] == str(paper_config(10).train.seed)  # one seed: no mean
    assert line == ("Not shown: 18 of the 22 rows (paper experiments not run here); the columns mode, status, "
                    "plcc_diff, parameters_448, paper_parameters, source, paper_table. table_prompt_types.csv has every "
                    "row and column.")
    styled = tables.display_table(table, csv)
    assert styled.data.equals(view) and line in styled.to_html(exclude_styles=True).replace("<wbr>", "")  # caption
    written = pd.read_csv(csv, na_values=["n/a"])
    assert written.columns.tolist() == table.columns.tolist() and len(written) == 22
    assert (written["status"] == "not run").sum() == 18
    add_mul = tables.add_vs_mul_table(results, paper, tables.mul_residual_results(runs_dir))
    view, line, _ = tables.table_view(add_mul)
    assert list(view.columns) == list(tables.ADD_MUL_VIEW.values()) and len(view) == len(add_mul)
    assert view.loc[0, ["SRCC add", "SRCC mul", "mul \u2212 add"]].tolist() == ["0.500", "0.400", "-0.100"]
    assert line.startswith("Not shown: the columns size, paper_srcc_mul, srcc_diff_mul, plcc_add,")
    assert not line.endswith("column.")  # no CSV named: none claimed
    every_run = tables.prompt_type_table(tables.run_results(runs_dir), paper).query("experiment in [4, 10, 13]")
    assert tables.table_view(every_run).caption.startswith("Not shown: the columns mode")  # all ran: no count


def test_the_notebook_view_of_runs_names_each_run_once(runs_dir):
    """Notebooks 02-04 show their runs (vpkit.runs.collect_runs): the name says experiment, dataset, prompt and mode,
    so those columns are left out (and said so); a run without a test result says its status instead."""
    from vpkit.runs import collect_runs

    runs = collect_runs(runs_dir).drop(columns=["run"])
    view = tables.table_view(runs)
    assert list(view.shown.columns) == [h for c, h in tables.RUNS_VIEW.items() if c in runs.columns]
    stopped = view.shown[view.shown["run"] == paper_config(13).name]
    assert stopped["test SRCC"].tolist() == ["partial"] and stopped["epochs"].tolist() == [2]  # no test: said why
    assert (view.shown["test SRCC"] != "partial").sum() == 3
    assert view.caption.startswith("Not shown: the columns number, dataset, prompt, size, mode, model, status")


def test_runs_on_the_generated_set_are_never_labelled_as_the_papers_dataset(tmp_path, paper):
    """The demo trains on a generated set in KADID-10k's layout: its rows and bars say so beside the paper's number."""
    from vpkit import plots
    from vpkit.data.table import SYNTHETIC_MARKER
    from vpkit.runs import read_config

    demo, real = tmp_path / "demo_data", tmp_path / "data"
    (demo / "kadid10k").mkdir(parents=True)
    (demo / "kadid10k" / SYNTHETIC_MARKER).write_text("{}")
    (real / "kadid10k").mkdir(parents=True)
    for root in (demo, real):
        run = fake_run(root / "runs", 4, 0.5, 0.55)
        config = read_config(run).with_overrides({"dataset": {"root": str(root)}})
        write_config(run, config)
        write_state(run, RunState(config_hash=config.hash(), epoch=2, best_epoch=2, best_selection=0.5, finished=True))
    zero_shot = pd.DataFrame({"dataset": ["kadid"], "srcc": [0.1], "plcc": [0.12]})
    synthetic = tables.padding_table(tables.run_results(demo / "runs"), paper, zero_shot)
    assert tables.synthetic_datasets(synthetic) == {"kadid"}
    assert tables.table_view(synthetic).shown["dataset"].tolist() == ["kadid (synthetic set)"] * 2  # zero-shot too
    assert "synthetic_data" not in tables.table_view(synthetic).caption  # said in the dataset's cell
    ticks = [t.get_text() for t in plots.comparison_bars(synthetic).axes[0].get_xticklabels()]
    assert ticks[0].replace("\n", " ") == "synthetic demo set (KADID-10k layout)" and ticks[1] == "KonIQ-10k"
    prompt_types = tables.prompt_type_table(tables.run_results(demo / "runs"), paper)
    heat = plots.srcc_heatmap(tables.srcc_grid(prompt_types), synthetic=tables.synthetic_datasets(prompt_types))
    ticks = [t.get_text().replace("\n", " ") for t in heat.axes[0].get_xticklabels()]
    assert ticks == ["synthetic demo set (KADID-10k layout)", "KonIQ-10k", "AGIQA-3K"]
    measured = tables.padding_table(tables.run_results(real / "runs"), paper, zero_shot)
    assert tables.synthetic_datasets(measured) == set() and tables.table_view(measured).shown["dataset"][0] == "kadid"
    assert plots.comparison_bars(measured).axes[0].get_xticklabels()[0].get_text() == "KADID-10k"


def test_long_notes_get_a_table_of_their_own_and_long_words_may_break(tmp_path):
    """A dataset's problem (paragraphs with paths) is shown below the numbers, in a table of its own, and a path
    or a name may break after / _ + , so that no word sets a column's width (JupyterLab shows an executed
    notebook's tables without their CSS)."""
    problem = f"{tmp_path}/data/KonIQ-10k: no score file found (looked for koniq10k_scores_and_distributions.csv)"
    summary = pd.DataFrame({"dataset": ["kadid", "koniq"], "usable": [True, False], "images": [40, 0],
                            "note": ["synthetic scores (demo set)", problem]})
    view = tables.table_view(summary)
    assert list(view.shown.columns) == ["dataset", "usable", "images"] and view.caption == ""
    assert view.notes["dataset"].tolist() == ["kadid", "koniq"]
    assert view.notes["note"].tolist() == summary["note"].tolist()  # the whole text
    shown = tables.display_table(summary)
    html = shown.to_html()
    assert "koniq10k_<wbr>scores_<wbr>and_<wbr>distributions.csv" in html and "/<wbr>data/<wbr>KonIQ-10k:" in html
    assert "synthetic scores (demo set)" in html  # short words are left alone
    assert shown.data.equals(view.shown) and html.index(">images<") < html.index("no score file found")
    short = tables.table_view(summary.assign(note=["synthetic scores (demo set)", ""]))
    assert short.notes is None and "note" in short.shown.columns  # a short note stays in its row


def test_paper_results_need_a_source_per_row(tmp_path):
    bad = tmp_path / "paper_results.csv"
    bad.write_text(",".join(tables.PAPER_RESULTS_COLUMNS) + "\n" + "experiment,4,,kadid,Padding,30,add,0.9,,,,Table,\n")
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


def test_a_figure_reaches_the_disk_before_it_replaces_the_old_one(tmp_path, monkeypatch):
    import os

    import matplotlib.pyplot as plt

    from vpkit import atomic, plots

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                       real_fsync(fd)))
    target = tmp_path / "figure.png"
    target.write_bytes(b"the previous figure")
    fig = plt.figure()
    plots.save_figure(fig, target)
    plt.close(fig)
    assert target.read_bytes().startswith(b"\x89PNG")
    assert len(synced) == 1 and Path(synced[0]).parent == tmp_path and Path(synced[0]).name.startswith(".figure.png.")
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left


def test_table_figures_show_the_papers_number_and_the_difference(runs_dir, paper):
    from vpkit import plots

    results = tables.run_results(runs_dir)
    prompt_types = tables.prompt_type_table(results, paper)
    heat = plots.srcc_heatmap(tables.srcc_grid(prompt_types), tables.srcc_grid(prompt_types, "paper_srcc"))
    cells = [text.get_text() for text in heat.axes[0].texts]
    assert "0.500\npaper 0.932 (-0.432)" in cells  # measured, published, measured - published
    assert "not run\npaper 0.852" in cells  # KonIQ 30 px padding: published, not run here
    bars = plots.comparison_bars(tables.padding_table(results, paper))
    assert [text.get_text() for text in bars.axes[0].texts] == ["-0.432 vs paper\n1 seed", "not run", "not run"]
    modes = plots.add_mul_bars(tables.add_vs_mul_table(results, paper))
    assert "no number for mul" in modes.axes[0].get_xlabel()


# ----------------------------------------------------------------------------- vpkit's mul_residual variants


def test_a_mul_residual_run_is_never_the_papers_mul_result(tmp_path, paper, capsys):
    root = tmp_path / "runs"
    fake_run(root, 22, 0.40, 0.42)  # the paper's mul ...
    residual = fake_run(root, 22, 0.60, 0.61, mode="mul_residual")  # ... and vpkit's fix of it
    alone = fake_run(root, 25, 0.55, 0.56, mode="mul_residual")  # a fix without the paper's run
    assert (residual.name, alone.name) == ("exp_22_kadid_padding_30px_mul_residual",
                                           "exp_25_kadid_center_patch_30px_mul_residual")
    results = tables.run_results(root).set_index("experiment")
    assert list(results.index) == [22]  # 25 has no run in the paper's mode: not run, not the fix's number
    assert results.loc[22, "name"] == "exp_22_kadid_padding_30px_mul" and results.loc[22, "srcc"] == pytest.approx(0.40)
    fixes = tables.mul_residual_results(root).set_index("experiment")
    assert list(fixes.index) == [22, 25] and fixes.loc[22, "srcc"] == pytest.approx(0.60)
    assert fixes.loc[25, "name"] == alone.name and fixes.loc[25, "parameters_448"] == 3 * 30 * 30
    assert "several run folders" not in capsys.readouterr().out  # the fix is no duplicate of the mul run
    table = tables.add_vs_mul_table(tables.run_results(root), paper, fixes.reset_index()).set_index("experiment_mul")
    assert list(table.index) == [22, 25]
    assert table.loc[22, "srcc_mul"] == pytest.approx(0.40) and table.loc[22, "srcc_mul_residual"] == pytest.approx(0.60)
    assert table.loc[22, "run_mul_residual"] == residual.name and table.loc[22, "plcc_mul_residual"] == pytest.approx(0.61)
    assert pd.isna(table.loc[25, "srcc_mul"]) and table.loc[25, "srcc_mul_residual"] == pytest.approx(0.55)
    assert not any(column.startswith("paper") and "residual" in column for column in table.columns)  # no paper number
    without = tables.add_vs_mul_table(tables.run_results(root), paper)
    assert list(without["experiment_mul"]) == [22] and without["srcc_mul_residual"].isna().all()


def test_a_run_in_another_mode_than_the_papers_is_named_not_counted(tmp_path, capsys):
    root = tmp_path / "runs"
    fake_run(root, 4, 0.50, 0.55, mode="mul")  # experiment 4 is add in the paper
    assert tables.run_results(root).empty and tables.mul_residual_results(root).empty
    assert "exp_04_kadid_padding_30px_mul: another prompt mode than the paper's" in capsys.readouterr().out


def test_add_mul_bars_show_the_fix_as_vpkits(runs_dir, paper):
    from vpkit import plots

    fake_run(runs_dir, 22, 0.60, 0.61, mode="mul_residual")
    table = tables.add_vs_mul_table(tables.run_results(runs_dir), paper, tables.mul_residual_results(runs_dir))
    ax = plots.add_mul_bars(table).axes[0]
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[:3] == ["add", "mul", "mul_residual (vpkit's fix)"] and "not a paper experiment" in ax.get_xlabel()
    heights = sorted(round(patch.get_height(), 2) for patch in ax.patches if patch.get_height() > 0)
    assert heights == [0.3, 0.4, 0.5, 0.6]  # add 4 and 10, mul 22, mul_residual 22
    missing = int(table[["srcc_add", "srcc_mul", "srcc_mul_residual"]].isna().sum().sum())
    said = [text for text in ax.texts if text.get_text() == "not run"]
    assert missing > 0 and len(said) == missing  # every empty slot says so
    assert ax.get_xlim() == (-0.5, len(table) - 0.5)  # and every group is inside the axes, the labels too


def test_an_experiment_trained_with_more_seeds_shows_their_mean_and_range(runs_dir, paper):
    for seed, srcc in ((1, 0.40), (2, 0.60)):
        fake_run(runs_dir, 4, srcc, 0.5, seed=seed)
    results = tables.run_results(runs_dir)
    four = results[results["experiment"] == 4].iloc[0]
    assert four["name"] == paper_config(4).name and len(results[results["experiment"] == 4]) == 1  # its own result
    assert four["seeds"].split(", ")[1:] == ["1", "2"]
    assert [four["srcc_mean"], four["srcc_min"], four["srcc_max"]] == pytest.approx(
        [(four["srcc"] + 0.4 + 0.6) / 3, min(four["srcc"], 0.4), max(four["srcc"], 0.6)])
    padding = tables.padding_table(results, paper)
    assert padding.loc[padding["experiment"] == 4, "srcc_mean"].tolist() == pytest.approx([four["srcc_mean"]])
    single = results[results["experiment"] != 4]
    assert single["srcc_mean"].isna().all() and (single["seeds"].str.count(",") == 0).all()  # one seed: said so
    from vpkit import plots

    labels = [text.get_text() for text in plots.comparison_bars(padding).axes[0].texts]
    assert any(label.endswith("3 seeds") for label in labels)


def test_runs_side_by_side_that_differ_in_model_revision_or_vpkit_version_are_named(runs_dir, capsys):
    results = tables.run_results(runs_dir)
    entry = provenance.session("cpu", provenance.model_source("tiny-random"), provenance.data_source(None))
    for run in results["run"]:
        provenance.write_record(run, "training", [entry])
    assert tables.provenance_differences(results) == []  # made alike: nothing to say
    second = results["run"][1]
    other = {**entry, "model": {"kind": "hub", "repo_id": "o/m", "commit": "c0ffee"},
             "environment": {**entry["environment"], "vpkit": "0.0.9", "git": None}}
    provenance.write_record(second, "training", [other])
    lines = tables.provenance_differences(results)
    assert lines[0].startswith("note: the runs side by side differ in model revision: tiny-random (")
    assert f"o/m @ c0ffee ({results['name'][1]})" in lines[0]
    assert "differ in vpkit version" in lines[1] and f"0.0.9 ({results['name'][1]})" in lines[1]
    tables.note_provenance_differences(results)
    assert capsys.readouterr().out == "\n".join(lines) + "\n"
