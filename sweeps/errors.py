"""Errors a user can cause, and how they reach the terminal.

Anything a user can fix (a bad config, a malformed data file, a model that is not there) raises a
``UserError``: the CLI prints its one-paragraph message and exits with code 2, without a traceback.
Bugs stay ordinary exceptions, with their tracebacks.
"""

from __future__ import annotations

from pathlib import Path

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem the user can fix; the message names where it is and what to do."""

    def __init__(
        self, problem: str, *, where: str | Path | None = None, field: str | None = None, fix: str | None = None
    ):
        self.problem = problem
        self.where = str(where) if where is not None else None
        self.field = field
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        place = ""
        if self.where and self.field:
            place = f"{self.where}: {self.field}: "
        elif self.where:
            place = f"{self.where}: "
        elif self.field:
            place = f"{self.field}: "
        text = f"{place}{self.problem}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class ConfigError(UserError):
    """A config file or option is invalid."""


class DataError(UserError):
    """A data file or folder cannot be used as given."""


class ModelError(UserError):
    """A model cannot be loaded (unknown id without network, missing files, wrong architecture)."""


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped (Ctrl-C, or Tune stopped it) before every pending cell had a record; the CLI exits 130."""

    def __init__(self, run_dir, *, unfinished: int, total: int):
        super().__init__(f"{unfinished} of {total} cells have no result")
        self.run_dir, self.unfinished, self.total = run_dir, unfinished, total
