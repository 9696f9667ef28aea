"""Progress bars that suit where they are seen.

tqdm.auto draws an ipywidgets bar in any Jupyter kernel, but a kernel that papermill or nbclient runs has no
front end: the executed notebook keeps each widget's text fallback, frozen at "0%". So a widget bar is drawn
only where a front end shows it: a kernel that Jupyter Server started for a notebook (it sets JPY_SESSION_NAME).
Other kernels get text bars that print their first and last state (and one line per HEADLESS_INTERVAL_S),
which read as a short record in the executed notebook; bars that clear themselves when done (leave=False: the
batches of one epoch) are not drawn there at all, as they would leave a frozen "0%" line each. A terminal gets
tqdm's usual bar.
$VPKIT_PROGRESS = "widgets" or "text" overrides the choice (another front end, e.g. an editor's).
"""
from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm as _auto_tqdm
from tqdm.std import tqdm as _text_tqdm

CHOICE_VARIABLE = "VPKIT_PROGRESS"
SESSION_VARIABLE = "JPY_SESSION_NAME"  # set by Jupyter Server in the kernels it starts for a notebook
HEADLESS_INTERVAL_S = 30.0


def in_kernel() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached), with or without a front end."""
    module = sys.modules.get("IPython")
    shell = module.get_ipython() if module is not None else None
    return shell is not None and hasattr(shell, "kernel")


def live_frontend() -> bool:
    """True where widgets are seen as they change: a kernel Jupyter started for a notebook (or
    $VPKIT_PROGRESS=widgets); False in a papermill/nbclient kernel and outside Jupyter."""
    choice = os.environ.get(CHOICE_VARIABLE, "").strip().lower()
    if choice in ("widgets", "text"):
        return choice == "widgets" and in_kernel()
    return in_kernel() and bool(os.environ.get(SESSION_VARIABLE))


def tqdm(*args, **kwargs):
    """tqdm.auto's bar where someone watches it live, else a text bar that leaves its first and last state."""
    if in_kernel() and not live_frontend():
        if kwargs.get("leave") is False:
            kwargs["disable"] = True
        kwargs.setdefault("mininterval", HEADLESS_INTERVAL_S)
        kwargs.setdefault("file", sys.stdout)  # stderr would show each bar on a red background
        return _text_tqdm(*args, **kwargs)
    return _auto_tqdm(*args, **kwargs)
