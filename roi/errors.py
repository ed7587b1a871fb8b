"""The one error a user of ``roi`` can cause: an input table that cannot be analysed.

Independent of ``sweeps.errors`` on purpose: the analysis half installs and runs without ``sweeps``.
"""

from __future__ import annotations

EXIT_INPUT_ERROR = 2


class RoiInputError(Exception):
    """The results table (or an option) cannot be analysed; the message names the file/column and the fix."""

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)
