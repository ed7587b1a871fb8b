"""Whether the run behind a results table finished, for ``roi report``'s first lines and ``--require-complete``.

The table alone cannot say: a fixed grid cut short, an adaptive search stopped before its end and a finished
sweep all give tables that analyse. The run folder can (``sweeps.status``: missing cells, ``adaptive.json``
not at its end, a driver state left behind). ``sweeps.status`` is pure Python (no torch, Ray or faiss) and
ships with ``roi``; a table exported on its own (no ``config.yaml`` beside it) has no verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunState:
    done: int  # cells with an ok record
    total: int  # cells the run has so far (an unfinished adaptive search adds more)
    state: str  # running | interrupted | not started (sweeps.status.RunStatus.state)
    reasons: tuple[str, ...]
    resume: str  # the command that goes on

    @property
    def line(self) -> str:
        return f"incomplete run: {self.done} of {self.total} cells ({self.state}: {'; '.join(self.reasons)})"


def unfinished_run(path: str | Path) -> RunState | None:
    """The run folder's verdict when it has not finished; None when it has, or when ``path`` is no run folder."""
    try:
        from sweeps.errors import UserError
        from sweeps.status import run_status
    except ImportError:  # an install without the sweeps package: no verdict, the table is all there is
        return None
    folder = str(path)
    if not folder.startswith(("s3://", "gs://", "gcs://", "file://", "hdfs://", "abfs://", "az://")):
        local = Path(folder)
        if local.is_file():  # runs/<name>/results.parquet: its folder is the run folder
            local = local.parent
        if not (local / "config.yaml").is_file():
            return None
        folder = str(local)
    try:
        status = run_status(folder)
    except (UserError, OSError):  # not a run folder, or one this version cannot read: no verdict
        return None
    if status.finished:
        return None
    return RunState(
        done=len(status.done),
        total=status.total,
        state=status.state,
        reasons=tuple(status.unfinished),
        resume=status.resume,
    )
