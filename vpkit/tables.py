"""The paper's tables rebuilt from run folders, each beside the numbers the paper reports.

    results = run_results("OUT/runs")          # one row per paper experiment that has a run folder
    paper = read_paper_results()               # vpkit/assets/paper_results.csv: every published number, with source
    padding_table(results, paper, zero_shot)   # 30 px padding + addition per dataset (and the zero-shot row)
    prompt_type_table(results, paper)          # SRCC for each prompt type x dataset (addition)
    residual = mul_residual_results("OUT/runs")  # vpkit's mul_residual runs of mul experiments, kept apart
    add_vs_mul_table(results, paper, residual) # addition against multiplication (and vpkit's fix beside it)
    methods_table(paper, results)              # the paper's comparison with other methods (+ our runs)
    note_provenance_differences(results, residual)  # says when runs differ in model revision or vpkit version
    display_table(table, csv)                  # in a notebook: the rows that ran, in columns that fit its width

vpkit/assets/paper_results.csv has one row per published number: `kind` "experiment" (a paper experiment,
`experiment` = its number in vpkit.config.PAPER_EXPERIMENTS) or "method" (a row of the paper's
comparison with other methods, `method` = its name), the `source` file and the `table` in it that
prints the number, and a `note`. The multiplication experiments 22-33 have rows with empty numbers:
the paper publishes none for them.

A run folder belongs to paper experiment N only when it has N's prompt mode: a run of mul experiment N
with prompt mode mul_residual (vpkit's fix, exp_NN_..._mul_residual) is never taken for the paper's result
of N; mul_residual_results has those, and add_vs_mul_table shows them in columns of their own.

A number the paper does not report is NaN here and "n/a" in written CSVs and displays; it is never
filled in. `*_diff` columns are ours minus the paper's. `synthetic_data` is True for a run trained on a generated set
(the demo's), which views and figures then name as such, never as the paper's dataset.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from vpkit.data.specs import DATASETS
from vpkit.resources import package_path
from vpkit.vocabulary import SHAPES

PAPER_RESULTS = package_path("assets", "paper_results.csv")
PAPER_RESULTS_COLUMNS = ("kind", "experiment", "method", "dataset", "prompt", "size", "mode", "srcc", "plcc",
                         "parameters_reported", "source", "table", "note")
RESULT_KINDS = ("experiment", "method")
NOT_AVAILABLE = "n/a"
ZERO_SHOT = "zero-shot"
ZERO_SHOT_PROMPT = "none (zero-shot)"


# ----------------------------------------------------------------------------- inputs


def read_paper_results(path: str | Path = PAPER_RESULTS) -> pd.DataFrame:
    """Every published number (one row each, see the module docstring); NaN where the paper gives none.

    Each row is checked: its kind, its source and table, an experiment row's number against
    vpkit.config.PAPER_EXPERIMENTS (dataset, prompt, size, mode), numbers in [-1, 1]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the paper's reported numbers are missing (vpkit/assets/paper_results.csv "
                                "ships inside the package; pass its path)")
    frame = pd.read_csv(path, na_values=[NOT_AVAILABLE, ""], keep_default_na=True)
    missing = [c for c in PAPER_RESULTS_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {', '.join(missing)} missing; expected {', '.join(PAPER_RESULTS_COLUMNS)}")
    for position, row in frame.iterrows():
        _check_paper_row(row, f"{path}, line {position + 2}")
    frame["experiment"] = frame["experiment"].astype("Int64")
    frame["size"] = frame["size"].astype("Int64")
    return frame


def _check_paper_row(row, where: str) -> None:
    from vpkit.config import PAPER_EXPERIMENTS

    for column in ("source", "table"):
        if _missing(row[column]) or not str(row[column]).strip():
            raise ValueError(f"{where}: column '{column}' is empty; every reported number needs the file and the "
                             "table it was published in")
    if row["kind"] not in RESULT_KINDS:
        raise ValueError(f"{where}: kind {row['kind']!r}; use one of {', '.join(RESULT_KINDS)}")
    for column in ("srcc", "plcc"):
        value = row[column]
        if not _missing(value) and not (isinstance(value, (int, float)) and -1 <= value <= 1):
            raise ValueError(f"{where}: {column} {value!r} is not a correlation in [-1, 1] (leave it empty when "
                             "the paper gives none)")
    if row["kind"] == "method":
        if _missing(row["method"]) or not str(row["method"]).strip():
            raise ValueError(f"{where}: a 'method' row needs the method's name in column 'method'")
        return
    number = row["experiment"]
    if _missing(number) or number != int(number) or not 1 <= int(number) <= len(PAPER_EXPERIMENTS):
        raise ValueError(f"{where}: experiment {number!r}; give the paper experiment number 1..{len(PAPER_EXPERIMENTS)}")
    exp = PAPER_EXPERIMENTS[int(number) - 1]
    size = None if _missing(row["size"]) else int(row["size"])
    written = (row["dataset"], row["prompt"], size, row["mode"])
    expected = (exp.dataset, SHAPES[exp.position].paper_title, exp.size, exp.mode)
    if written != expected:
        raise ValueError(f"{where}: dataset, prompt, size, mode {written} do not match experiment {int(number)} "
                         f"{expected}; correct the experiment number or the row")


def paper_experiment_numbers(paper: pd.DataFrame) -> pd.DataFrame:
    """The experiment rows of read_paper_results that hold a published number."""
    rows = paper[(paper["kind"] == "experiment") & (paper["srcc"].notna() | paper["plcc"].notna())]
    return rows.reset_index(drop=True)


def run_results(runs_dir: str | Path) -> pd.DataFrame:
    """One row per paper experiment with a run folder under `runs_dir` in the paper's prompt mode: what it
    is, its status, test SRCC/PLCC, and trainable parameters as trained and at the paper's 448 px."""
    runs = _runs_by_mode(runs_dir)
    if not runs.empty:
        paper_mode = runs["mode"] == runs["paper_mode"]
        other = runs[~paper_mode & ~_is_mul_residual(runs)]
        if not other.empty:
            print(f"note: {', '.join(other['name'])}: another prompt mode than the paper's for that experiment, "
                  "so not taken for the paper's result")
        runs = runs[paper_mode]
    seed_runs = _is_seed_run(runs)
    results = _result_rows(runs[~seed_runs] if not runs.empty else runs, "experiment(s)")
    return _with_seed_statistics(results, runs[seed_runs] if not runs.empty else runs)


def _is_seed_run(runs: pd.DataFrame) -> pd.Series:
    """Runs of an experiment trained with one of its extra seeds (vpkit.plan.seed_run_name): they count in
    its mean and range, never as its result."""
    from vpkit.config import paper_config
    from vpkit.plan import seed_run_name

    if runs.empty:
        return pd.Series(dtype=bool)
    prefixes = [seed_run_name(paper_config(int(number)).name, 0)[:-1] for number in runs["number"]]
    return pd.Series([name.startswith(prefix) and name[len(prefix):].isdigit()
                      for name, prefix in zip(runs["name"], prefixes)], index=runs.index)


def _with_seed_statistics(results: pd.DataFrame, seed_runs: pd.DataFrame) -> pd.DataFrame:
    """`seeds` (the training seeds of each experiment's finished runs, its own first) and, where there are several,
    the mean, lowest and highest test SRCC over them; one seed leaves those n/a."""
    from vpkit.runs import read_config

    results = results.copy()
    seeds, means, lows, highs = [], [], [], []
    for _, row in results.iterrows():
        mine = seed_runs[(seed_runs["number"] == row["experiment"]) & (seed_runs["status"] == "finished")] \
            if not seed_runs.empty else seed_runs
        runs = [(read_config(row["run"]).train.seed, row["srcc"])] + [
            (read_config(run["run"]).train.seed, run.get("test_srcc", np.nan)) for _, run in mine.iterrows()]
        values = [float(v) for _, v in runs if not pd.isna(v)]
        seeds.append(", ".join(str(seed) for seed, _ in runs))
        several = len(runs) > 1 and len(values) == len(runs)
        means.append(float(np.mean(values)) if several else np.nan)
        lows.append(min(values) if several else np.nan)
        highs.append(max(values) if several else np.nan)
    results["seeds"], results["srcc_mean"], results["srcc_min"], results["srcc_max"] = seeds, means, lows, highs
    return results


def mul_residual_results(runs_dir: str | Path) -> pd.DataFrame:
    """One row per paper mul experiment with a run folder under `runs_dir` in prompt mode mul_residual
    (vpkit's fix, x * (1 + p): not a paper experiment), with run_results' columns."""
    runs = _runs_by_mode(runs_dir)
    return _result_rows(runs[_is_mul_residual(runs)] if not runs.empty else runs, "the mul_residual variant of")


def _runs_by_mode(runs_dir: str | Path) -> pd.DataFrame:
    """vpkit.runs.collect_runs of the runs of a paper experiment, with the paper's mode of each (`paper_mode`)."""
    from vpkit.config import PAPER_EXPERIMENTS
    from vpkit.runs import collect_runs

    runs = collect_runs(runs_dir)
    if "number" not in runs:  # no run folder, or only damaged ones (`vpkit runs` lists those)
        return pd.DataFrame()
    runs = runs[runs["number"].isin(range(1, len(PAPER_EXPERIMENTS) + 1))].copy()
    runs["paper_mode"] = [PAPER_EXPERIMENTS[int(number) - 1].mode for number in runs["number"]]
    return runs


def _is_mul_residual(runs: pd.DataFrame) -> pd.Series:
    return (runs["mode"] == "mul_residual") & (runs["paper_mode"] == "mul")


def _result_rows(runs: pd.DataFrame, what: str) -> pd.DataFrame:
    from vpkit.runs import read_config

    columns = ["experiment", "name", "status", "epochs_done", "best_epoch", "srcc", "plcc", "parameters",
               "parameters_448", "synthetic_data", "model", "run"]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    duplicated = runs[runs["number"].duplicated()]
    if not duplicated.empty:
        print(f"note: several run folders for {what} {sorted(set(duplicated['number'].astype(int)))}; "
              "the first of each is used")
        runs = runs.drop_duplicates("number")
    rows = []
    for _, run in runs.iterrows():
        config = read_config(run["run"])
        rows.append({
            "experiment": int(run["number"]), "name": run["name"], "status": run["status"],
            "epochs_done": run["epochs_done"], "best_epoch": run["best_epoch"],
            "srcc": run.get("test_srcc", np.nan), "plcc": run.get("test_plcc", np.nan),
            "parameters": _parameters(config.prompt), "parameters_448": _paper_parameters(int(run["number"])),
            "synthetic_data": synthetic_data(config), "model": run["model"], "run": run["run"],
        })
    return pd.DataFrame(rows, columns=columns)


def synthetic_data(config) -> bool:
    """Whether a run (its RunConfig) was trained on a generated set (vpkit data synth) rather than the dataset it
    is named after: its data root holds a dataset folder with the synthetic marker."""
    from vpkit.data.table import SYNTHETIC_MARKER

    return any(Path(config.dataset.root).glob(f"*/{SYNTHETIC_MARKER}"))


def synthetic_datasets(table: pd.DataFrame) -> set[str]:
    """The datasets of a table (run_results, padding_table, prompt_type_table) whose runs used a generated set: its
    rows of that dataset, zero-shot and not run included, are about the generated set, not the paper's dataset."""
    if "synthetic_data" not in table.columns:
        return set()
    return set(table.loc[table["synthetic_data"].fillna(False).astype(bool), "dataset"])


def provenance_differences(*results: pd.DataFrame) -> list[str]:
    """One line for each of the model revision and the vpkit version in which the runs of `results` (run_results
    tables) differ, naming the runs of each value (from their provenance.json); [] when they agree."""
    from vpkit.provenance import model_label, read_record, vpkit_label

    facts: dict[str, dict[str, list[str]]] = {"model revision": {}, "vpkit version": {}}
    for frame in results:
        for run, name in zip(frame["run"], frame["name"]):
            for session in (read_record(run) or {}).get("sessions", []):
                for fact, value in (("model revision", model_label(session.get("model") or {})),
                                    ("vpkit version", vpkit_label(session.get("environment") or {}))):
                    names = facts[fact].setdefault(str(value), [])
                    if name not in names:
                        names.append(name)
    return [f"note: the runs side by side differ in {fact}: "
            + "; ".join(f"{value} ({_few_names(names)})" for value, names in by_value.items())
            for fact, by_value in facts.items() if len(by_value) > 1]


def note_provenance_differences(*results: pd.DataFrame) -> None:
    """Print provenance_differences (nothing when the runs agree)."""
    for line in provenance_differences(*results):
        print(line)


def _few_names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def read_zero_shot(path: str | Path, score_type: str | None = None, missing_ok: bool = False) -> pd.DataFrame | None:
    """Zero-shot scores written by notebook 01 (vpkit.reproduce.zero_shot_scores) of one score type
    (default: the paper's); None when the file is absent and `missing_ok`."""
    from vpkit.scoring import DEFAULT_SCORE_TYPE

    path = Path(path)
    if not path.is_file():
        if missing_ok:
            print(f"note: no zero-shot scores at {path} (notebook 01_zero_shot makes them); no zero-shot rows")
            return None
        raise FileNotFoundError(f"{path}: no zero-shot scores; run notebook 01_zero_shot first")
    frame = pd.read_csv(path, na_values=[NOT_AVAILABLE])
    wanted = score_type or DEFAULT_SCORE_TYPE
    return frame[frame["score_type"] == wanted].reset_index(drop=True)


def dataset_summary(found: dict) -> pd.DataFrame:
    """One row per dataset looked for (vpkit.plan.find_datasets): usable or not, images per split, MOS range."""
    rows = []
    for name, item in found.items():
        row = {"dataset": name, "usable": item.usable, "images": 0, "train": 0, "val": 0, "test": 0,
               "mos_min": np.nan, "mos_max": np.nan, "layout": "", "note": ""}
        if item.table is not None:
            frame = item.table.frame
            row.update(images=len(frame), **item.table.split_counts(), mos_min=frame["mos"].min(),
                       mos_max=frame["mos"].max(), layout=item.table.layout,
                       note="synthetic scores (demo set)" if item.table.synthetic else "")
        if item.problems:
            row["note"] = str(item.problems[0])
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the tables


def padding_table(results: pd.DataFrame, paper: pd.DataFrame, zero_shot: pd.DataFrame | None = None) -> pd.DataFrame:
    """30 px padding + addition on each dataset (the paper's headline), with a zero-shot row per dataset."""
    numbers = _experiments(lambda e: e.prompt_type == "padding" and e.size == 30 and e.mode == "add")
    return _sorted(_with_zero_shot(_compare(numbers, results, paper), zero_shot))


def prompt_type_table(results: pd.DataFrame, paper: pd.DataFrame, zero_shot: pd.DataFrame | None = None
                      ) -> pd.DataFrame:
    """SRCC and PLCC of every prompt type and size (addition) on every dataset, with a zero-shot row per dataset
    when `zero_shot` is given (the baseline each prompt has to beat)."""
    return _sorted(_with_zero_shot(_compare(_experiments(lambda e: e.mode == "add"), results, paper), zero_shot))


def add_vs_mul_table(results: pd.DataFrame, paper: pd.DataFrame, residual: pd.DataFrame | None = None
                     ) -> pd.DataFrame:
    """Each multiplication experiment beside the addition one with the same dataset, prompt and size.
    The paper publishes no multiplication numbers, so `paper_srcc_mul` and `srcc_diff_mul` stay empty.
    With `residual` (mul_residual_results), the `*_mul_residual` columns hold vpkit's fix of each mul
    experiment (its run folder in `run_mul_residual`): not a paper number, so it has no paper column."""
    from vpkit.config import PAPER_EXPERIMENTS

    compared = _compare(list(range(1, len(PAPER_EXPERIMENTS) + 1)), results, paper)
    fixes = (residual if residual is not None else _result_rows(pd.DataFrame(), "")).set_index("experiment")
    ran = set(results["experiment"]) | set(fixes.index)  # a row when we ran any of it (the paper reports no mul)
    by_number = compared.drop_duplicates("experiment").set_index("experiment")
    rows = []
    for mul in (e for e in PAPER_EXPERIMENTS if e.mode == "mul"):
        add = next(e for e in PAPER_EXPERIMENTS if e.mode == "add" and (e.dataset, e.position, e.size)
                   == (mul.dataset, mul.position, mul.size))
        if not ({add.number, mul.number} & ran):
            continue
        row = {"dataset": mul.dataset, "prompt": _label(mul), "size": mul.size,
               "experiment_add": add.number, "experiment_mul": mul.number}
        for mode, exp in (("add", add), ("mul", mul)):
            found = by_number.loc[exp.number] if exp.number in by_number.index else None
            for column in ("srcc", "plcc", "paper_srcc", "srcc_diff"):
                row[f"{column}_{mode}"] = np.nan if found is None else found[column]
        row["srcc_mul_minus_add"] = row["srcc_mul"] - row["srcc_add"]
        fix = fixes.loc[mul.number] if mul.number in fixes.index else None
        row.update({"run_mul_residual": np.nan if fix is None else fix["name"],
                    "srcc_mul_residual": np.nan if fix is None else fix["srcc"],
                    "plcc_mul_residual": np.nan if fix is None else fix["plcc"]})
        rows.append(row)
    table = pd.DataFrame(rows, columns=_ADD_MUL_COLUMNS)
    table["size"] = table["size"].astype("Int64")
    return table


# The three modes' SRCC side by side first (vpkit's mul_residual fix beside the paper's mul), then the rest.
_ADD_MUL_COLUMNS = ["dataset", "prompt", "size", "srcc_add", "srcc_mul", "srcc_mul_residual", "srcc_mul_minus_add",
                    "paper_srcc_add", "srcc_diff_add", "paper_srcc_mul", "srcc_diff_mul", "plcc_add", "plcc_mul",
                    "plcc_mul_residual", "experiment_add", "experiment_mul", "run_mul_residual"]


def srcc_grid(table: pd.DataFrame, value: str = "srcc") -> pd.DataFrame:
    """prompt_type_table as prompt x dataset of one column (for display and heat maps): `value` is "srcc" (ours),
    "paper_srcc" or "srcc_diff" (ours minus the paper's). The zero-shot row, if the table has one, comes first."""
    if value not in ("srcc", "paper_srcc", "srcc_diff"):
        raise ValueError(f"srcc_grid value {value!r}; use srcc, paper_srcc or srcc_diff")
    ours = table.drop_duplicates(["experiment", "dataset"])
    grid = ours.pivot_table(index="prompt", columns="dataset", values=value, aggfunc="first", dropna=False)
    first = pd.to_numeric(ours["experiment"], errors="coerce").groupby(ours["prompt"]).min()  # the paper's order
    order = sorted(grid.index, key=lambda prompt: (prompt != ZERO_SHOT_PROMPT, first.get(prompt, 0), prompt))
    return grid.reindex(index=order, columns=[d for d in DATASETS if d in grid.columns]).astype(float)


def methods_table(paper: pd.DataFrame, results: pd.DataFrame | None = None) -> pd.DataFrame:
    """The paper's comparison with other methods: one row per method and published table, SRCC per dataset
    (NaN where the table has "-"), and, with `results`, a last row of our runs of the paper's own method
    (30 px padding, add: experiments 4, 5, 6)."""
    from vpkit.config import PAPER_EXPERIMENTS

    methods = paper[paper["kind"] == "method"]
    rows = []
    for (table, method), cells in methods.groupby(["table", "method"], sort=False):
        row = {"method": method, "table": table, "parameters": _first_given(cells["parameters_reported"])}
        row.update({f"srcc_{d}": _first_given(cells.loc[cells["dataset"] == d, "srcc"]) for d in DATASETS})
        rows.append(row)
    if results is not None:
        headline = {e.dataset: e.number for e in PAPER_EXPERIMENTS
                    if e.prompt_type == "padding" and e.size == 30 and e.mode == "add"}
        ours = results.set_index("experiment")["srcc"] if not results.empty else pd.Series(dtype=float)
        row = {"method": "this reproduction (vpkit, experiments 4-6)", "table": "measured",
               "parameters": np.nan}
        row.update({f"srcc_{d}": float(ours.get(n, np.nan)) for d, n in headline.items()})
        rows.append(row)
    columns = ["method", "table", *(f"srcc_{d}" for d in DATASETS), "parameters"]
    table = pd.DataFrame(rows, columns=columns)
    for dataset in DATASETS:
        table[f"srcc_{dataset}"] = pd.to_numeric(table[f"srcc_{dataset}"], errors="coerce")
    return table


# ----------------------------------------------------------------------------- output


# Long text (a dataset's problem, a source) wraps instead of being cut at pandas' 50 characters or widening the
# table past the notebook; the row index (0, 1, ...) says nothing and is left out.
_CELL = "white-space: normal; max-width: 16em; vertical-align: top; padding: 2px 4px;"
TABLE_STYLES = [{"selector": "td", "props": _CELL}, {"selector": "th", "props": _CELL}]  # Styler scopes each to the table
# Provenance columns a reader looks up rather than reads: in the written CSV, left out of the notebook's view so
# that the numbers and their differences fit its width (the view's caption names them).
DISPLAY_HIDDEN = ("source", "paper_table", "paper_parameters", "run_mul_residual", "run", "model")
NOT_RUN = "not run"
SEED_SUMMARY = "seeds_srcc"  # a view's column: the seeds, and with several their srcc_mean [srcc_min, srcc_max]
FINISHED = ("finished", "evaluated")  # a run's status with a test result, the zero-shot row's
# What a notebook shows of the tables compared with the paper, as {column: header}: few columns with short headers
# that wrap at spaces, ours beside the paper's number and the difference, so that the view fits JupyterLab's
# output area (592 px at 1024 px wide with the file browser open) without CSS, which JupyterLab drops from a
# notebook it did not execute itself. A run without a test result (status partial, running...) says its status in
# the SRCC cell (STATUS_IN) instead of a status column. The CSV keeps every column; the caption names those left out.
COMPARE_VIEW = {"experiment": "exp.", "dataset": "dataset", "prompt": "prompt", "srcc": "SRCC",
                "paper_srcc": "paper SRCC", "srcc_diff": "SRCC \u2212 paper", "plcc": "PLCC", "paper_plcc": "paper PLCC",
                SEED_SUMMARY: "seeds: SRCC mean [min, max]", "parameters": "params"}
ADD_MUL_VIEW = {"dataset": "dataset", "prompt": "prompt", "srcc_add": "SRCC add", "srcc_mul": "SRCC mul",
                "srcc_mul_residual": "SRCC mul_residual (vpkit's fix)", "srcc_mul_minus_add": "mul \u2212 add",
                "paper_srcc_add": "paper SRCC add", "srcc_diff_add": "add \u2212 paper"}
# vpkit.runs.collect_runs (notebooks 02-04): the run's name says its experiment, dataset, prompt and mode.
RUNS_VIEW = {"name": "run", "epochs_done": "epochs", "best_epoch": "best epoch",
             "val_srcc": "val SRCC", "test_srcc": "test SRCC", "test_plcc": "test PLCC", "test_krcc": "test KRCC",
             "test_n_images": "test images"}
# Each view with the columns that make a table one of its kind; a view shows those of its columns the table has.
_VIEWS = ((("status", "paper_srcc", "srcc_diff"), COMPARE_VIEW), (("srcc_mul_minus_add",), ADD_MUL_VIEW),
          (("name", "epochs_done", "best_epoch"), RUNS_VIEW))
# Free text that can run to paragraphs (a dataset's problem, with its paths): longer than LONG_NOTE characters, it is
# shown in a table of its own below the numbers rather than squeezed beside them.
NOTE_COLUMNS = ("note",)
LONG_NOTE = 60
STATUS_IN = ("srcc", "test_srcc")
SYNTHETIC_SET = "synthetic set"  # beside a dataset's name in a view where the runs used a generated set
_MERGED = {SEED_SUMMARY: ("seeds", "srcc_mean", "srcc_min", "srcc_max")}


class TableView(NamedTuple):
    """What a notebook shows of a table (table_view): `shown` (strings), the `caption` line saying what it leaves
    out ("" when nothing), and `notes`, the long notes moved out of `shown` into a table of their own (or None)."""
    shown: pd.DataFrame
    caption: str
    notes: pd.DataFrame | None


class TableDisplay:
    """What display_table returns: in a notebook, HTML (the view as a pandas Styler without the row index, the
    caption above it, the notes table below it); as text (an executed notebook's text/plain, a terminal), the same
    as plain text. `data` is the view's frame."""

    def __init__(self, view: TableView):
        self.view = view

    @property
    def data(self) -> pd.DataFrame:
        return self.view.shown

    def to_html(self, **options) -> str:
        """The HTML a notebook shows (`options` go to pandas' Styler.to_html)."""
        tables = [_styled(self.view.shown, self.view.caption)]
        tables += [_styled(self.view.notes)] if self.view.notes is not None else []
        return "".join(table.to_html(**options) for table in tables)

    def _repr_html_(self) -> str | None:
        try:
            import jinja2  # noqa: F401  (pandas' Styler needs it; the notebooks extra brings it with JupyterLab)
        except ImportError:
            return None  # the text below is shown instead
        return self.to_html()

    def __repr__(self) -> str:
        parts = [self.view.caption] if self.view.caption else []
        parts += [frame.to_string(index=False) for frame in (self.view.shown, self.view.notes) if frame is not None]
        return "\n\n".join(parts)


def display_table(frame: pd.DataFrame, csv: str | Path | None = None, digits: int = 3) -> TableDisplay:
    """For showing a table in a notebook: its table_view (see there), as HTML that fits the notebook's width and as
    plain text. `csv`: the file write_table wrote `frame` to, named in the caption as having every row and column."""
    return TableDisplay(table_view(frame, csv, digits))


def _styled(shown: pd.DataFrame, caption: str = ""):
    styled = shown.style.hide(axis="index").set_table_styles(TABLE_STYLES).format(_breakable)
    # a header may break after any underscore, so long names do not set the column width
    styled = styled.format_index(lambda name: _breakable(name, shortest=1), axis="columns")
    return styled.set_caption(_breakable(caption)) if caption else styled


def table_view(frame: pd.DataFrame, csv: str | Path | None = None, digits: int = 3) -> TableView:
    """What a notebook shows of a table, as strings (display_values), and one line saying what it leaves out.

    A comparison with the paper (padding_table, prompt_type_table) shows the experiments that ran (and zero-shot)
    in COMPARE_VIEW's columns; add_vs_mul_table ADD_MUL_VIEW's; runs (vpkit.runs.collect_runs) RUNS_VIEW's
    (a run without a test result says its status where its SRCC would be); any other table every column but
    DISPLAY_HIDDEN.
    The line counts the rows left out (paper experiments not run) and names the columns left out, and says that
    `csv` (where write_table wrote the table) has every row and column. A NOTE_COLUMNS column with a note longer
    than LONG_NOTE characters goes into a table of its own (the first column and the note, for the rows with
    one), where it has the notebook's width."""
    view_columns = next((view for kind, view in _VIEWS if set(kind) <= set(frame.columns)), None)
    rows, not_shown = frame, ""
    if view_columns is COMPARE_VIEW:
        not_run = frame["status"] == NOT_RUN
        rows = frame[~not_run]
        if not_run.any():
            not_shown = f"{int(not_run.sum())} of the {len(frame)} rows (paper experiments not run here)"
    values = display_values(rows, digits).reset_index(drop=True)
    synthetic = synthetic_datasets(frame)
    if "dataset" in values.columns and synthetic:  # said where the dataset is named; not a column of its own
        values["dataset"] = [f"{name} ({SYNTHETIC_SET})" if name in synthetic else name for name in values["dataset"]]
    if view_columns is None:
        view_columns = {column: column for column in frame.columns if column not in DISPLAY_HIDDEN}
    else:
        view_columns = {column: header for column, header in view_columns.items()
                        if all(part in frame.columns for part in _MERGED.get(column, (column,)))}
    merged = {part for column in view_columns for part in _MERGED.get(column, ())}
    shown = pd.DataFrame({header: _view_column(values, column) for column, header in view_columns.items()},
                         index=values.index)
    notes = None
    long_notes = [c for c in NOTE_COLUMNS if c in shown.columns and shown[c].astype(str).str.len().max() > LONG_NOTE]
    if long_notes and len(shown.columns) > len(long_notes):
        notes = shown[[shown.columns[0], *long_notes]]
        notes = notes[(notes[long_notes] != "").any(axis=1)].reset_index(drop=True)
        shown = shown.drop(columns=long_notes)
    left_out = [c for c in frame.columns if c not in view_columns and c not in merged
                and not (c == "synthetic_data" and "dataset" in view_columns)]
    if not (not_shown or left_out):
        return TableView(shown, "", notes)
    named = f"the column{'s' if len(left_out) > 1 else ''} {', '.join(left_out)}" if left_out else ""
    line = f"Not shown: {'; '.join(part for part in (not_shown, named) if part)}."
    line += f" {Path(csv).name} has every row and column." if csv is not None else ""
    return TableView(shown, line, notes)


def _breakable(value, shortest: int = 13) -> str:
    """`value` as HTML text in which a word of `shortest` characters or more may break after each / _ + , (a <wbr>,
    which JupyterLab keeps where it drops CSS), so that no path or name sets a column's width."""
    text = html.escape(str(value), quote=False)
    return re.sub(rf"\S{{{shortest},}}", lambda word: re.sub(r"([/_+,])(?=\S)", r"\1<wbr>", word.group()), text)


def _view_column(values: pd.DataFrame, column: str) -> list:
    if column in STATUS_IN and "status" in values.columns:
        return [status if value == NOT_AVAILABLE and status not in FINISHED else value
                for value, status in zip(values[column], values["status"])]
    if column not in _MERGED:
        return values[column].tolist()
    seeds, mean, low, high = (values[part] for part in _MERGED[column])
    return [s if m == NOT_AVAILABLE else f"{s}: {m} [{lo}, {hi}]" for s, m, lo, hi in zip(seeds, mean, low, high)]


def display_values(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The values display_table shows, as strings: one precision per column, n/a for NaN."""
    shown = frame.copy().astype(object)
    for column in frame.columns:
        if pd.api.types.is_float_dtype(frame[column]):
            values = frame[column].dropna()
            places = 0 if len(values) and (values == values.round()).all() and values.abs().max() > 1 else digits
            shown[column] = [NOT_AVAILABLE if pd.isna(v) else f"{float(v):.{places}f}" for v in frame[column]]
        else:
            shown[column] = [NOT_AVAILABLE if _missing(v) else v for v in frame[column]]
    return shown


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV atomically, with n/a for missing numbers; returns the path."""
    from vpkit.atomic import write_csv_atomic

    path = Path(path)
    written = frame.copy().astype(object)
    written[frame.isna()] = NOT_AVAILABLE
    write_csv_atomic(path, written)
    return path


# ----------------------------------------------------------------------------- helpers


def _experiments(keep) -> list[int]:
    from vpkit.config import PAPER_EXPERIMENTS

    return [e.number for e in PAPER_EXPERIMENTS if keep(e)]


def _label(exp) -> str:
    size = "" if exp.size is None else f" {exp.size} px"
    return f"{SHAPES[exp.position].label}{size}"


def _compare(numbers: list[int], results: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """A row per (experiment, reporting source) for experiments we ran or the paper reports."""
    from vpkit.config import paper_experiment

    ours = results[results["experiment"].isin(numbers)].set_index("experiment")
    published = paper_experiment_numbers(paper)
    reported = published[published["experiment"].isin(numbers)]
    rows = []
    for number in sorted(set(ours.index) | set(reported["experiment"])):
        exp = paper_experiment(int(number))
        run = ours.loc[number] if number in ours.index else None
        base = {"experiment": int(number), "dataset": exp.dataset, "prompt": _label(exp), "mode": exp.mode,
                "status": NOT_RUN if run is None else run["status"],
                "srcc": np.nan if run is None else run["srcc"], "plcc": np.nan if run is None else run["plcc"],
                **{column: np.nan if run is None else run.get(column, np.nan) for column in SEED_COLUMNS},
                "parameters": np.nan if run is None else run["parameters"],
                "parameters_448": _paper_parameters(int(number)),
                "synthetic_data": np.nan if run is None else run.get("synthetic_data", np.nan)}
        sources = reported[reported["experiment"] == number]
        for _, source in (sources.iterrows() if not sources.empty else [(None, None)]):
            rows.append({**base, **_reported(source)})
    table = pd.DataFrame(rows, columns=_COMPARE_COLUMNS)
    for column in ("srcc", "plcc", "srcc_mean", "srcc_min", "srcc_max", "paper_srcc", "paper_plcc"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table["parameters"] = pd.to_numeric(table["parameters"], errors="coerce").astype("Int64")
    table["srcc_diff"] = table["srcc"] - table["paper_srcc"]
    table["plcc_diff"] = table["plcc"] - table["paper_plcc"]
    return table[_COMPARE_ORDER]


SEED_COLUMNS = ("seeds", "srcc_mean", "srcc_min", "srcc_max")  # run_results: over an experiment's extra seeds
_COMPARE_COLUMNS = ["experiment", "dataset", "prompt", "mode", "status", "srcc", "plcc", *SEED_COLUMNS, "parameters",
                    "parameters_448", "synthetic_data", "paper_srcc", "paper_plcc", "paper_parameters", "source",
                    "paper_table"]
# Each of our numbers beside the paper's and the difference, first, where a narrow notebook still shows them; the
# seeds, the parameter counts and the provenance after.
_COMPARE_ORDER = ["experiment", "dataset", "prompt", "mode", "status", "srcc", "paper_srcc", "srcc_diff", "plcc",
                  "paper_plcc", "plcc_diff", *SEED_COLUMNS, "parameters", "parameters_448", "synthetic_data",
                  "paper_parameters", "source", "paper_table"]


def _reported(source) -> dict:
    if source is None:
        return {"paper_srcc": np.nan, "paper_plcc": np.nan, "paper_parameters": np.nan, "source": np.nan,
                "paper_table": np.nan}
    return {"paper_srcc": source["srcc"], "paper_plcc": source["plcc"],
            "paper_parameters": source["parameters_reported"], "source": source["source"],
            "paper_table": source["table"]}


def _with_zero_shot(table: pd.DataFrame, zero_shot: pd.DataFrame | None) -> pd.DataFrame:
    if zero_shot is None or zero_shot.empty:
        return table
    table = pd.concat([table, _zero_shot_rows(zero_shot, table.columns)], ignore_index=True)
    table["parameters"] = table["parameters"].astype("Int64")
    return table


def _zero_shot_rows(zero_shot: pd.DataFrame, columns) -> pd.DataFrame:
    rows = [{"experiment": ZERO_SHOT, "dataset": row["dataset"], "prompt": ZERO_SHOT_PROMPT, "mode": "",
             "status": "evaluated", "srcc": row["srcc"], "plcc": row["plcc"], "parameters": 0,
             "parameters_448": 0} for _, row in zero_shot.iterrows()]
    return pd.DataFrame(rows, columns=columns)


def _sorted(table: pd.DataFrame) -> pd.DataFrame:
    order = {"kadid": 0, "koniq": 1, "agiqa": 2}
    key = table["dataset"].map(order).fillna(3) * 1000 + pd.to_numeric(table["experiment"], errors="coerce").fillna(0)
    return table.iloc[np.argsort(key.to_numpy(), kind="stable")].reset_index(drop=True)


def _parameters(prompt) -> int:
    from vpkit.prompters import num_trainable_parameters, prompter_from_config

    return num_trainable_parameters(prompter_from_config(prompt))


def _paper_parameters(number: int) -> int:
    from vpkit.config import paper_config

    return _parameters(paper_config(number).prompt)


def _first_given(values: pd.Series):
    given = values.dropna()
    return given.iloc[0] if not given.empty else np.nan


def _missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value, not a missing one
        return False
