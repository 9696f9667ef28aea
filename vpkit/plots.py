"""Figures for the notebooks (matplotlib + seaborn, the `notebooks` extra) and the prompt gallery widget.

Every figure function returns a matplotlib Figure; `publish(fig, path)` writes it as a PNG
(atomically), shows it in a notebook, and closes it. Nothing here needs a display: outside
Jupyter, showing is skipped and the PNG is still written.
"""
from __future__ import annotations

import io
import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vpkit.atomic import atomic_replace
from vpkit.data.specs import DATASETS, SPECS
from vpkit.progress import live_frontend  # widgets only where a front end shows them
from vpkit.tables import synthetic_data, synthetic_datasets
from vpkit.vocabulary import shape_of

SYNTHETIC_TITLE = "synthetic demo set ({} layout)"  # never the real dataset's name for generated images
CURVE_METRICS = (("train_loss", "train loss (MSE)"), ("val_srcc", "validation SRCC"))


# ----------------------------------------------------------------------------- showing and saving


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where figures and widgets can be shown)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=fig.dpi, bbox_inches="tight")
    return buffer.getvalue()


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` atomically (vpkit.atomic: temp file, fsync, rename); returns the path."""
    path = Path(path)
    png = figure_png(fig)
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(png))
    return path


# A figure whose PNG is larger than this (the prompt gallery: photographs, ~2 MB) is shown in the notebook as a JPEG,
# so the executed notebook stays small; the PNG file keeps every pixel.
PREVIEW_LIMIT_BYTES = 1_000_000


def publish(fig, path: str | Path) -> Path:
    """Save `fig` as a PNG, show it when in a notebook (a JPEG of it above PREVIEW_LIMIT_BYTES), close it;
    returns the path."""
    saved = save_figure(fig, path)
    if in_notebook():
        from IPython.display import Image, display

        data = saved.read_bytes()
        if len(data) > PREVIEW_LIMIT_BYTES:
            display(Image(data=jpeg_preview(data), format="jpeg"))
        else:
            display(Image(data=data))
    plt.close(fig)
    return saved


def jpeg_preview(png: bytes, quality: int = 85) -> bytes:
    """A JPEG of a PNG image (for showing, not for keeping)."""
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _new_figure(rows: int, cols: int, width: float, height: float):
    # constrained layout: titles, labels and legends of neighbouring panels never overlap
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    plt.close(fig)  # kept out of pyplot's list, so a notebook shows it only where asked
    return fig, axes


def _nothing_to_show(fig, ax, message: str):
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return fig


# ----------------------------------------------------------------------------- data


def dataset_title(name: str, synthetic: bool = False) -> str:
    """The dataset's name for figures; a generated set (vpkit data synth) says it is one."""
    title = SPECS[name].title if name in SPECS else name
    return SYNTHETIC_TITLE.format(title) if synthetic else title


def _beside(ax) -> None:
    """Put a seaborn legend right of the axes, where it covers no data."""
    import seaborn as sns

    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title_fontsize=8, frameon=False)


def mos_histograms(tables: dict) -> object:
    """Distribution of the scores (MOS as in each dataset's file) per split, one panel per dataset."""
    import seaborn as sns

    fig, axes = _new_figure(1, max(len(tables), 1), 4.2, 3.2)
    for ax, (name, table) in zip(axes[0], tables.items()):
        sns.histplot(table.frame, x="mos", hue="split", hue_order=["train", "val", "test"], multiple="stack",
                     bins=20, ax=ax)
        ax.set_title(f"{dataset_title(name, table.synthetic)} ({len(table)} images)", fontsize=9)
        ax.set_xlabel("MOS")
        _beside(ax)
    return fig


def spread_examples(frame: pd.DataFrame, count: int) -> pd.DataFrame:
    """`count` rows of `frame` spread evenly from the lowest to the highest MOS."""
    ordered = frame.sort_values(["mos", "name"]).reset_index(drop=True)
    if len(ordered) <= count:
        return ordered
    return ordered.iloc[np.unique(np.linspace(0, len(ordered) - 1, count).round().astype(int))]


def example_grid(tables: dict, per_dataset: int = 6, image_size: int = 224) -> object:
    """Example images of each dataset from worst to best, titled with their MOS."""
    from vpkit.data import prepare_image

    fig, axes = _new_figure(max(len(tables), 1), per_dataset, 2.0, 2.2)
    for row, (name, table) in zip(axes, tables.items()):
        examples = spread_examples(table.frame, per_dataset)
        for ax, (_, item) in zip(row, examples.iterrows()):
            ax.imshow(prepare_image(item["path"], image_size))
            ax.set_title(f"MOS {item['mos']:.2f}", fontsize=9)
        row[0].set_ylabel(dataset_title(name, table.synthetic), fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def score_type_bars(zero_shot: pd.DataFrame) -> object:
    """Zero-shot SRCC of every score type, per dataset."""
    import seaborn as sns

    fig, axes = _new_figure(1, 1, 7.0, 0.3 * zero_shot["score_type"].nunique() * zero_shot["dataset"].nunique() + 1.2)
    sns.barplot(zero_shot, y="score_type", x="srcc", hue="dataset", orient="h", ax=axes[0, 0])
    axes[0, 0].set_ylabel("score type (positive vs negative words)")
    axes[0, 0].set_xlabel("SRCC (test split)")
    axes[0, 0].axvline(0, color="black", linewidth=0.8)
    _beside(axes[0, 0])
    return fig


# ----------------------------------------------------------------------------- training curves


def _draw_curves(axes, rows_by_run: dict[str, list[dict]]) -> None:
    """Both panels, labelled even before the first epoch has ended (`rows_by_run` empty)."""
    from matplotlib.ticker import MaxNLocator

    for ax, (metric, label) in zip(axes, CURVE_METRICS):
        ax.clear()
        for name, rows in rows_by_run.items():
            epochs = [row["epoch"] for row in rows if metric in row]
            ax.plot(epochs, [row[metric] for row in rows if metric in row], marker="o", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        if not rows_by_run:
            ax.text(0.5, 0.5, "drawn when the first epoch ends", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
    if rows_by_run:
        axes[-1].legend(fontsize=7)


def training_curves(run_dirs: Iterable[str | Path]) -> object:
    """Train loss and validation SRCC per epoch of each run, from the runs' metrics files."""
    from vpkit.runs import read_metrics

    fig, axes = _new_figure(1, len(CURVE_METRICS), 5.0, 3.5)
    _draw_curves(axes[0], {Path(run).name: read_metrics(run) for run in run_dirs})
    return fig


class LiveCurves:
    """Loss and validation SRCC curves redrawn after every epoch (in a notebook; silent elsewhere).

        curves = LiveCurves()
        train(config, run_dir, callbacks=[curves.for_run(config.name)])
    """

    def __init__(self):
        self.rows: dict[str, list[dict]] = {}
        self.fig, axes = _new_figure(1, len(CURVE_METRICS), 5.0, 3.5)
        self.axes = axes[0]
        _draw_curves(self.axes, self.rows)  # labelled axes from the start: an epoch can take minutes
        self.handle = None
        if in_notebook():
            from IPython.display import Image, display

            self.handle = display(Image(data=figure_png(self.fig)), display_id=True)

    def for_run(self, name: str):
        """The per-epoch callback of one run (takes the epoch's metrics row)."""
        def record(row: dict) -> None:
            self.rows.setdefault(name, []).append(row)
            self.redraw()
        return record

    def redraw(self) -> None:
        _draw_curves(self.axes, self.rows)
        if self.handle is not None:
            from IPython.display import Image

            self.handle.update(Image(data=figure_png(self.fig)))


# ----------------------------------------------------------------------------- tables


def comparison_bars(table: pd.DataFrame) -> object:
    """Our SRCC beside the paper's and zero-shot, per dataset (vpkit.tables.padding_table); each of our bars
    is labelled with its difference from the paper's number where the paper publishes one. Where an experiment
    was trained with several seeds (extra_seeds), our bar is their mean with their range as an error bar, and
    says how many; a single seed's bar says so."""
    groups = [d for d in DATASETS if d in set(table["dataset"])]
    bars = {what: [] for what in ("zero-shot", "ours", "paper")}
    ranges, seed_counts = [], []
    for dataset in groups:
        rows = table[table["dataset"] == dataset]
        zero = rows[rows["experiment"] == "zero-shot"]
        ours = rows[rows["experiment"] != "zero-shot"]
        mean = ours["srcc_mean"].iloc[0] if not ours.empty and "srcc_mean" in ours else np.nan
        several = not np.isnan(mean)
        bars["zero-shot"].append(zero["srcc"].iloc[0] if not zero.empty else np.nan)
        bars["ours"].append(mean if several else ours["srcc"].iloc[0] if not ours.empty else np.nan)
        bars["paper"].append(ours["paper_srcc"].iloc[0] if not ours.empty else np.nan)
        ranges.append((mean - ours["srcc_min"].iloc[0], ours["srcc_max"].iloc[0] - mean) if several else (0.0, 0.0))
        seed_counts.append(len(str(ours["seeds"].iloc[0]).split(",")) if several else 1)
    fig, axes = _new_figure(1, 1, 7.5, 3.8)
    ax = axes[0, 0]
    if all(np.isnan(v) for values in bars.values() for v in values):
        return _nothing_to_show(fig, ax, "no results yet")
    x = np.arange(len(groups))
    width = 0.27
    colours = {"zero-shot": "tab:grey", "ours": "tab:blue", "paper": "tab:orange"}
    labels = {"ours": "ours (mean and range over seeds where several)" if max(seed_counts, default=1) > 1
              else "ours"}
    for offset, (what, values) in zip((-width, 0.0, width), bars.items()):
        ax.bar(x + offset, np.nan_to_num(values), width, label=labels.get(what, what), color=colours[what])
    if max(seed_counts, default=1) > 1:
        ax.errorbar(x, np.nan_to_num(bars["ours"]), yerr=np.array(ranges).T, fmt="none", ecolor="black",
                    capsize=3, linewidth=1)
    for i, (ours, paper) in enumerate(zip(bars["ours"], bars["paper"])):
        seeds = f"{seed_counts[i]} seeds" if seed_counts[i] > 1 else "1 seed"
        if np.isnan(ours):
            ax.annotate("not run", (x[i], 0.0), ha="center", va="bottom", fontsize=7, rotation=90,
                        xytext=(0, 2), textcoords="offset points")
        else:
            top = max(ours + ranges[i][1], 0.0)
            versus = f"{ours - paper:+.3f} vs paper\n" if not np.isnan(paper) else ""
            ax.annotate(f"{versus}{seeds}", (x[i], top), ha="center", va="bottom", fontsize=7, xytext=(0, 2),
                        textcoords="offset points")
    synthetic = synthetic_datasets(table)
    ax.set_xticks(x, [textwrap.fill(dataset_title(d, d in synthetic), 22) for d in groups])
    ax.set_ylabel("SRCC (test split)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(min(0.0, *(v for values in bars.values() for v in values if not np.isnan(v))) - 0.05, 1.1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def srcc_heatmap(grid: pd.DataFrame, paper: pd.DataFrame | None = None, synthetic: Iterable[str] = ()) -> object:
    """Prompt type x dataset SRCC (vpkit.tables.srcc_grid), coloured by ours; with `paper` (srcc_grid of
    "paper_srcc") each cell also shows the paper's number and the difference. Blank: not run. `synthetic`: the
    datasets whose runs used a generated set (vpkit.tables.synthetic_datasets), titled so."""
    import seaborn as sns

    # narrow enough that a notebook shows it near its own size, so the 8 pt cell text stays readable
    fig, axes = _new_figure(1, 1, 1.6 * max(grid.shape[1], 1) + 2.3, 0.55 * max(len(grid), 1) + 1.5)
    ax = axes[0, 0]
    if grid.empty or (grid.isna().all().all() and (paper is None or paper.isna().all().all())):
        return _nothing_to_show(fig, ax, "no runs yet")
    values = grid.astype(float)
    sns.heatmap(values, annot=False, cmap="viridis", vmin=min(0.0, np.nanmin(values.to_numpy(), initial=0.0)),
                vmax=1.0, ax=ax, cbar_kws={"label": "SRCC (ours)"})
    published = paper.reindex(index=grid.index, columns=grid.columns) if paper is not None else None
    for i, prompt in enumerate(grid.index):
        for j, dataset in enumerate(grid.columns):
            ax.text(j + 0.5, i + 0.5, _heat_cell(values.iloc[i, j], np.nan if published is None
                                                  else published.loc[prompt, dataset]),
                    ha="center", va="center", fontsize=8, color=_text_colour(values.iloc[i, j]))
    ax.set_xticks(np.arange(grid.shape[1]) + 0.5, [textwrap.fill(dataset_title(d, d in set(synthetic)), 20)
                                                   for d in grid.columns])
    ax.set_ylabel("")
    ax.set_xlabel("dataset; cells: ours / paper (ours - paper)" if paper is not None else "dataset")
    return fig


def _text_colour(value: float) -> str:
    return "black" if np.isnan(value) or value > 0.6 else "white"  # readable on viridis' light and dark ends


def _heat_cell(ours: float, paper: float) -> str:
    if np.isnan(paper):
        return "" if np.isnan(ours) else f"{ours:.3f}"
    if np.isnan(ours):
        return f"not run\npaper {paper:.3f}"
    return f"{ours:.3f}\npaper {paper:.3f} ({ours - paper:+.3f})"


MUL_RESIDUAL_LABEL = "mul_residual (vpkit's fix)"


def add_mul_bars(table: pd.DataFrame) -> object:
    """SRCC with addition and with multiplication for each prompt and dataset (vpkit.tables.add_vs_mul_table),
    with the paper's addition number as a marker (it publishes none for multiplication), and vpkit's
    mul_residual fix as a third bar where the table has one."""
    import seaborn as sns

    modes = {"add": "add", "mul": "mul"}
    if table.get("srcc_mul_residual", pd.Series(dtype=float)).notna().any():
        modes["mul_residual"] = MUL_RESIDUAL_LABEL
    long = pd.DataFrame(
        [{"prompt": f"{row['prompt']} / {row['dataset']}", "mode": label, "srcc": row[f"srcc_{mode}"]}
         for _, row in table.iterrows() for mode, label in modes.items()], columns=["prompt", "mode", "srcc"])
    fig, axes = _new_figure(1, 1, 1.2 * max(len(table), 1) + 3.0, 3.8)
    ax = axes[0, 0]
    if long["srcc"].isna().all():
        return _nothing_to_show(fig, ax, "no add/mul runs yet")
    sns.barplot(long, x="prompt", y="srcc", hue="mode", ax=ax)
    width = 0.8 / len(modes)  # seaborn's bars share a width of 0.8 per group
    for index, (_, row) in enumerate(table.iterrows()):
        for position, mode in enumerate(modes):
            if pd.isna(row[f"srcc_{mode}"]):  # an empty slot says why, as in comparison_bars
                ax.annotate("not run", (index - 0.4 + width * (position + 0.5), 0.0), ha="center", va="bottom",
                            fontsize=7, rotation=90, xytext=(0, 2), textcoords="offset points")
    published = table["paper_srcc_add"].to_numpy(dtype=float)
    if not np.isnan(published).all():
        add_bar = -0.4 + 0.4 / len(modes)  # seaborn's bars share a width of 0.8; add is the first of each group
        ax.scatter(np.arange(len(table)) + add_bar, published, marker="_", s=400, color="black", zorder=3,
                   label="paper, add")
    ax.set_xlabel("the paper publishes no number for mul" + ("; mul_residual is vpkit's fix, not a paper experiment"
                                                             if len(modes) == 3 else ""))
    ax.set_ylabel("SRCC (test split)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(-0.5, len(table) - 0.5)  # seaborn ends the axis at the last drawn bar, cutting off a group run in add only
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


# ----------------------------------------------------------------------------- prompt gallery


def epoch_checkpoints(run_dir: str | Path) -> dict[str, Path]:
    """'best' and 'epoch N' -> prompt checkpoint of a run folder."""
    from vpkit.runs import BEST_CHECKPOINT

    run_dir = Path(run_dir)
    found = {"best": run_dir / BEST_CHECKPOINT} if (run_dir / BEST_CHECKPOINT).is_file() else {}
    for path in sorted(run_dir.glob("epoch-*.safetensors")):
        found[f"epoch {int(path.stem.split('-')[1])}"] = path
    if not found:
        raise FileNotFoundError(f"{run_dir}: no prompt checkpoints (best.safetensors, epoch-NN.safetensors); "
                                "has the run finished an epoch?")
    return found


MODE_ORDER = ("add", "mul", "mul_residual")  # a prompt's mul_residual run is shown beside its mul run


def run_label(run_dir: str | Path) -> str:
    """'folder: dataset, prompt, mode' of a run folder, e.g. 'exp_22_kadid_padding_30px_mul: KADID-10k,
    padding 15 px (at 224 px), mul'."""
    from vpkit.runs import read_config

    config = read_config(run_dir)
    prompt, dataset = config.prompt, config.dataset.name
    synthetic = synthetic_data(config)
    paper_shape = shape_of(prompt.type, prompt.is_center)
    shape = "replaced padding" if paper_shape is None else paper_shape.label
    size = "" if prompt.type == "full" or prompt.size is None else f" {prompt.size} px (at {prompt.image_size} px)"
    return f"{Path(run_dir).name}: {dataset_title(dataset, synthetic)}, {shape}{size}, {prompt.mode}"


def gallery_order(run_dirs: Iterable[str | Path]) -> list[Path]:
    """Runs by experiment number, then mode (add, mul, mul_residual), so a mul_residual run sits beside the mul
    run of the same prompt."""
    from vpkit.runs import read_config

    def key(run: Path):
        config = read_config(run)
        mode = MODE_ORDER.index(config.prompt.mode) if config.prompt.mode in MODE_ORDER else len(MODE_ORDER)
        return (config.number or 10_000, config.dataset.name, config.prompt.type, config.prompt.is_center,
                config.prompt.size or 0, mode, run.name)

    return sorted((Path(run) for run in run_dirs), key=key)


def mul_note(prompter) -> str:
    """The sentence shown next to a `mul` run: why its prompted images are black, with this prompt's typical
    (median) and largest value inside its region."""
    import torch

    with torch.no_grad():
        mask = prompter.region_mask()
        inside = prompter.canvas()[mask.expand(-1, 3, -1, -1)].abs().float()
        typical, peak = float(inside.median()), float(inside.max())
    outside = "" if bool(mask.all()) else "0 outside the prompt's region and "
    return (f"mul (the paper's mode) multiplies each pixel by the prompt itself: {outside}typically {typical:.2f} "
            f"inside it here (at most {peak:.2f}), so a typical pixel keeps {typical:.0%} of its brightness; "
            "mul_residual, image x (1 + prompt), keeps the image.")


def mul_residual_note(prompter) -> str:
    """The sentence shown next to a `mul_residual` run: what vpkit's fix does, with this prompt's range of factors."""
    import torch

    with torch.no_grad():
        inside = prompter.canvas()[prompter.region_mask().expand(-1, 3, -1, -1)]
    return (f"mul_residual (vpkit's fix, not a paper experiment) multiplies each pixel by 1 + prompt: 1 outside the "
            f"prompt's region, so the image stays, and {1 + float(inside.min()):.2f} to {1 + float(inside.max()):.2f} "
            "inside it here.")


def mode_note(mode: str, prompter) -> str:
    """The sentence next to a run of prompt mode `mode` in the gallery ("" for add)."""
    notes = {"mul": mul_note, "mul_residual": mul_residual_note}
    return notes[mode](prompter) if mode in notes else ""


NOTE_COLOURS = {"mul": "darkred", "mul_residual": "darkgreen"}


def _mode_of(run_dir: Path) -> str:
    from vpkit.runs import read_config

    return read_config(run_dir).prompt.mode


def gallery_examples(run_dir: str | Path, count: int = 3) -> pd.DataFrame:
    """Test images of the run's dataset spread over the MOS range (name, path, mos)."""
    from vpkit.data import load_table
    from vpkit.runs import read_config

    config = read_config(run_dir)
    data = config.dataset
    table = load_table(data.name, data.root, layout=data.layout, split=data.split, seed=config.train.seed)
    return spread_examples(table.rows("test"), count)


def prompt_views(prompter, image_path: str | Path, amplify: float | str) -> dict[str, np.ndarray]:
    """uint8 images: the prompt as learned, amplified, an example image, and that image prompted."""
    import torch

    from vpkit.data import prepare_image
    from vpkit.prompters import render_prompt

    image = prepare_image(image_path, prompter.image_size)
    with torch.no_grad():
        batch = torch.tensor(image).permute(2, 0, 1)[None].float() / 255.0  # a copy: the array may be read-only
        prompted = prompter(batch)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    return {"prompt": render_prompt(prompter, 1.0), "amplified": render_prompt(prompter, amplify),
            "image": image, "prompted": (prompted * 255).round().astype(np.uint8)}


def _amplify_label(amplify, prompter=None) -> str:
    """'x12.3 (auto)' for "auto" (the factor it chose for this prompter), else 'x30'."""
    from vpkit.prompters import auto_amplification

    if amplify == "auto":
        return f"x{auto_amplification(prompter):.3g} (auto)" if prompter is not None else "auto"
    return f"x{amplify:g}"


def gallery_figure(run_dirs: Iterable[str | Path], examples: int = 3, amplify: float | str = "auto",
                   checkpoint: str = "best") -> object:
    """One row per run (titled with run_label): the prompt, the prompt amplified, and `examples` test images with
    the prompt applied; a `mul` run's row says why its images are black (mul_note), a `mul_residual` run's row,
    just below it, what the fix does (mul_residual_note)."""
    from vpkit.evaluate import load_trained_prompt

    run_dirs = gallery_order(run_dirs)
    fig = plt.figure(figsize=(2.2 * (2 + examples), 2.9 * max(len(run_dirs), 1)), layout="constrained")
    plt.close(fig)  # kept out of pyplot's list, as _new_figure does
    if not run_dirs:
        return _nothing_to_show(fig, fig.add_subplot(), "no trained runs")
    for row_figure, run_dir in zip(fig.subfigures(len(run_dirs), 1, squeeze=False)[:, 0], run_dirs):
        row = row_figure.subplots(1, 2 + examples)
        prompter = load_trained_prompt(epoch_checkpoints(run_dir)[checkpoint]).prompter
        images = gallery_examples(run_dir, examples)
        for column, (_, item) in enumerate(images.iterrows()):
            views = prompt_views(prompter, item["path"], amplify)
            if column == 0:
                row[0].imshow(views["prompt"])
                row[1].imshow(views["amplified"])
                row[0].set_title("prompt", fontsize=9)
                row[1].set_title(f"prompt {_amplify_label(amplify, prompter)}", fontsize=9)
            row[2 + column].imshow(views["prompted"])
            row[2 + column].set_title(f"MOS {item['mos']:.2f}, prompted", fontsize=9)
        row_figure.suptitle(run_label(run_dir), fontsize=9)
        mode = _mode_of(run_dir)
        note = mode_note(mode, prompter)
        if note:
            row_figure.supxlabel(_wrapped(note, 16 * (2 + examples)), fontsize=10, color=NOTE_COLOURS[mode])
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def _wrapped(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def view_figure(views: dict[str, np.ndarray], title: str, note: str = "", note_colour: str = "darkred") -> object:
    fig, axes = _new_figure(1, len(views), 2.6, 2.8)
    for ax, (name, pixels) in zip(axes[0], views.items()):
        ax.imshow(pixels)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    if note:
        fig.supxlabel(_wrapped(note, 25 * len(views)), fontsize=8, color=note_colour)
    return fig


def prompt_gallery(run_dirs: Iterable[str | Path], examples: int = 6):
    """Interactive gallery: choose the run, the epoch, the image and the amplification ("auto" by default, as in
    the static gallery, or a factor on the slider).

    Returns the ipywidgets box (a notebook shows it as the cell's result), or None where widgets cannot
    be shown (no ipywidgets, or not in a notebook); the static `gallery_figure` covers those cases.
    """
    run_dirs = [Path(run) for run in run_dirs]
    if not run_dirs:
        print("no runs to show")
        return None
    try:
        import ipywidgets as widgets
    except ImportError:
        print("ipywidgets is not installed (pip install 'vpkit[notebooks]'); see the static gallery above")
        return None
    if not live_frontend():
        # papermill/nbclient would keep only the widget's text fallback, "VBox(children=(Dropdown(..."
        print("The interactive gallery needs a live Jupyter kernel (open this notebook in JupyterLab and run it); "
              "the static gallery above shows the same prompts.")
        return None
    import html

    from vpkit.evaluate import load_trained_prompt
    from vpkit.prompters import auto_amplification

    run_dirs = gallery_order(run_dirs)
    # width "auto" fills the row without the 4 px of margin that 100% adds (a horizontal scrollbar)
    wide = {"layout": widgets.Layout(width="auto"), "style": {"description_width": "initial"}}
    # the run folder in the list; what it is (dataset, prompt, mode) below it, wrapping in a narrow notebook
    run = widgets.Dropdown(options=[(p.name, p) for p in run_dirs], description="run", **wide)
    about = widgets.HTML(layout=widgets.Layout(width="auto", margin="0 0 0 2.5em"))
    note = widgets.HTML(layout=widgets.Layout(width="auto"))
    epoch = widgets.Dropdown(description="epoch")
    image = widgets.Dropdown(description="image", layout=widgets.Layout(width="auto"),
                             style={"description_width": "initial"})
    auto = widgets.Checkbox(value=True, description="auto amplification (99th percentile to full black/white)",
                            indent=False, layout=widgets.Layout(width="auto"))
    amplify = widgets.FloatLogSlider(value=10.0, base=10, min=0, max=3, step=0.01, description="amplify",
                                     disabled=True)
    # An Image widget, not an Output widget: an Output widget capturing a display while a notebook is
    # executed headlessly (papermill/nbclient) can deadlock the execution (jupyter/nbclient#312).
    picture = widgets.Image(format="png")

    choosing = []  # non-empty while choose_run fills the dropdowns: one redraw at the end, not one per change

    def redraw(change=None) -> None:
        if choosing or epoch.value is None or image.value is None:
            return
        amplify.disabled = auto.value
        prompter = load_trained_prompt(epoch_checkpoints(run.value)[epoch.value]).prompter
        if auto.value:  # the slider shows the factor "auto" chose, so unticking it starts from there
            choosing.append(True)
            try:
                amplify.value = auto_amplification(prompter)
            finally:
                choosing.clear()
        views = prompt_views(prompter, image.value, "auto" if auto.value else amplify.value)
        factor = _amplify_label("auto" if auto.value else amplify.value, prompter)
        views = {f"amplified {factor}" if name == "amplified" else name: pixels for name, pixels in views.items()}
        mode = _mode_of(run.value)
        picture.value = figure_png(view_figure(views, f"{run.value.name}, {epoch.value}"))
        # as text beside the picture, not inside it: a picture scaled to a narrow notebook would shrink it to ~6 px
        said = mode_note(mode, prompter)
        note.value = f'<span style="color: {NOTE_COLOURS.get(mode, "darkred")}">{html.escape(said)}</span>' \
            if said else ""

    def choose_run(change=None) -> None:
        kept_epoch, kept_image = epoch.value, image.value  # switching runs keeps what still applies
        about.value = html.escape(run_label(run.value).split(": ", 1)[1])
        choosing.append(run.value)
        try:
            epoch.options = list(epoch_checkpoints(run.value))
            image.options = [(f"{r['name']} (MOS {r['mos']:.2f})", r["path"])
                             for _, r in gallery_examples(run.value, examples).iterrows()]
            paths = [path for _, path in image.options]
            # a Dropdown that started empty keeps no selection by itself
            epoch.index = list(epoch.options).index(kept_epoch) if kept_epoch in epoch.options else 0
            image.index = paths.index(kept_image) if kept_image in paths else 0
        finally:
            choosing.clear()
        redraw()

    choose_run()
    run.observe(choose_run, names="value")
    for control in (epoch, image, auto, amplify):
        control.observe(redraw, names="value")
    return widgets.VBox([run, about, widgets.HBox([epoch, image]), widgets.HBox([auto, amplify]), picture, note],
                        layout=widgets.Layout(width="auto", overflow="hidden"))
