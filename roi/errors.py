"""The one error a user of ``roi`` can cause: an input table that cannot be analysed.

Independent of ``sweeps.errors`` on purpose: the analysis half installs and runs without ``sweeps``.
"""

from __future__ import annotations

EXIT_INPUT_ERROR = 2

# Where a message gives no fix of its own: what a results table must hold, and the report's options.
GENERAL_FIX = "see docs/results-schema.md for what a results table holds, and `roi report --help` for the options"


class RoiInputError(Exception):
    """The results table (or an option) cannot be analysed; the message names the file/column, ``fix`` the way out.

    Most messages end in their fix after the last "; " ("...; run the sweep first"); ``text`` prints it on its
    own ``fix:`` line, as ``sweeps`` errors do. Raisers whose message has no fix there pass ``fix=``.
    """

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message)

    @property
    def text(self) -> str:
        """The message and a ``fix:`` line: what the CLI prints after ``error: ``."""
        problem, fix = self.message, self.fix
        if fix is None:
            head, sep, tail = self.message.rpartition("; ")
            # "...; got 3" or "...; row 7 has x" is more of the problem, not a fix
            if sep and not tail.startswith(("got ", "row ", "allowed", "available")):
                problem, fix = head, tail
            else:
                fix = GENERAL_FIX
        return f"{problem}\n  fix: {fix}"
