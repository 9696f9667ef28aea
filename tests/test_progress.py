"""Progress bars: widgets only where a Jupyter front end shows them live, text that finishes elsewhere."""
import pytest
from tqdm.std import tqdm as text_tqdm

from vpkit import progress


@pytest.mark.parametrize(("kernel", "session", "choice", "widgets"), [
    (True, "notebooks/02.ipynb", None, True),  # JupyterLab started this kernel for a notebook
    (True, None, None, False),  # papermill / nbclient: nobody watches, the notebook keeps the output
    (True, "notebooks/02.ipynb", "text", False),
    (True, None, "widgets", True),  # another front end that shows widgets
    (False, "notebooks/02.ipynb", "widgets", False),  # no kernel, no widgets
])
def test_widget_bars_only_where_a_front_end_shows_them(monkeypatch, kernel, session, choice, widgets):
    monkeypatch.setattr(progress, "in_kernel", lambda: kernel)
    for name, value in ((progress.SESSION_VARIABLE, session), (progress.CHOICE_VARIABLE, choice)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert progress.live_frontend() is widgets


def test_a_headless_kernel_gets_a_text_bar_that_prints_its_first_and_last_state(monkeypatch, capsys):
    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.delenv(progress.SESSION_VARIABLE, raising=False)
    monkeypatch.delenv(progress.CHOICE_VARIABLE, raising=False)
    bar = progress.tqdm(range(50), desc="train")
    assert type(bar) is text_tqdm and bar.mininterval == progress.HEADLESS_INTERVAL_S
    list(bar)
    states = capsys.readouterr().out.replace("\r", "\n").split("\n")
    shown = [line for line in states if line.startswith("train:")]
    assert shown[0].startswith("train:   0%") and shown[-1].startswith("train: 100%") and len(shown) <= 3
    list(progress.tqdm(range(50), desc="batches", leave=False))  # clears itself: would leave a frozen 0% line
    assert capsys.readouterr().out == ""

