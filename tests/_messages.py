"""How the tests check vpkit's error messages: by what a user needs from them, not by their wording.

vpkit's rule for bad input is one line that names the file, field or option at fault and offers a fix
(docs/cli.md; vpkit.cli.main prints it). `assert_one_line_error` checks exactly that: one line, each of `names`
in it (a path, a field such as "train.lr", a value, an option), and a fix (`fix` when given: the option or command
the line must offer; otherwise one of FIX_WORDS). Rewording a message keeps these tests green; a message that
stops naming the file or stops saying what to do fails them.

A few messages are also pinned word for word, in tests/test_golden_messages.py (its docstring says which and why).
"""
from __future__ import annotations

import contextlib
import re

import pytest

# How vpkit's messages offer a fix: an imperative, an option / command to run, or the rule a value must meet (the
# values allowed). Lower case; a word matches where a word starts ("use " is not found in "because ").
FIX_WORDS = ("use ", "give ", "choose ", "run ", "rerun", "check ", "set ", "lower ", "raise ", "remove ",
             "delete ", "fix ", "free ", "pass ", "add ", "save ", "rename ", "install", "undo ", "move ", "make ",
             "wait ", "start ", "try ", "convert", "download", "write ", "put ", "keep ", "drop ", "one of",
             "must be", "allowed", " only", "needs ", "divide ", "extract ", "fix:", "replace ", "known:", "copy ",
             "accept ", "log in", "see ", "supported:", "resize ", "prepare ",
             "--", "`vpkit")

OFFERS_A_FIX = re.compile("|".join(rf"\b{re.escape(word)}" if word[0].isalpha() else re.escape(word)
                                   for word in FIX_WORDS))


def assert_one_line_error(error, names=(), fix: str | bool | None = None) -> str:
    """Check that `error` (an exception or the text vpkit printed) is one line naming each of `names` and offering
    a fix (`fix` itself when given; fix=False for a programming error of the Python API, which owes no fix);
    returns the line."""
    text = str(error).strip()
    lines = text.splitlines()
    assert len(lines) == 1, f"not one line:\n{text}"
    line = lines[0]
    missing = [str(name) for name in names if str(name) not in line]
    assert not missing, f"the message does not name {missing}: {line}"
    if fix is False:
        return line
    if fix is None:
        assert OFFERS_A_FIX.search(line.lower()), f"the message offers no fix: {line}"
    else:
        assert fix in line, f"the message does not offer {fix!r}: {line}"
    return line


@contextlib.contextmanager
def raises_one_line(kind, names=(), fix: str | bool | None = None):
    """`with raises_one_line(ConfigError, names=("c.yaml", "train.lr")):` pytest.raises(kind), then
    assert_one_line_error on what was raised."""
    with pytest.raises(kind) as caught:
        yield caught
    assert_one_line_error(caught.value, names, fix)
