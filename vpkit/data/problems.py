"""Problems found in a dataset on disk, reported with the file, the line and the fix."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: where it is (file, CSV line, field), what, and how to fix it."""

    file: Path
    message: str
    fix: str
    line: int | None = None  # 1-based line in the CSV file; the header is line 1
    field: str | None = None

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f", line {self.line}"
        if self.field is not None:
            where += f", column '{self.field}'"
        return f"{where}: {self.message}. Fix: {self.fix}"


class DatasetError(ValueError):
    """Raised when a dataset cannot be loaded as it is; `problems` lists what was found."""

    def __init__(self, problems: list[Problem], show_all: bool = False, hint: str | None = None):
        if not problems:
            raise ValueError("DatasetError needs at least one problem")
        self.problems = list(problems)
        shown = self.problems if show_all else self.problems[:1]
        lines = [str(p) for p in shown]
        hidden = len(self.problems) - len(shown)
        if hidden:
            lines.append(
                f"... and {hidden} more problem(s); list them all with `vpkit data check ROOT --all-errors` "
                "or load_table(..., all_errors=True)"
            )
        if hint:
            lines.append(hint)
        super().__init__("\n".join(lines))


def csv_line(row_position: int) -> int:
    """CSV line of the data row at 0-based `row_position` (line 1 is the header)."""
    return row_position + 2
