"""``roi backtest``: the same subcommand from the ``roi`` command and from ``python -m roi``, on a known power law."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from roi_fixtures import baseline_rows, data_size_rows, table, write_run

import roi.cli
import sweeps.cli

REPO = Path(__file__).resolve().parents[1]
SIZES = [100, 200, 500, 1000, 2000]


def power(n: int) -> float:
    """I(N) = 0.30 - 2.0 N^-0.5: a curve the forecast's power-law family fits exactly."""
    return 0.30 - 2.0 * n**-0.5


def _run(tmp_path: Path) -> Path:
    seeds, offsets = (0, 1, 2), (0.0, 0.0, 0.0)
    curve = {"sizes": SIZES, "improvement": [power(n) for n in SIZES]}
    rows = [*baseline_rows("designed", seeds=seeds), *data_size_rows("designed", curve, seeds=seeds, offsets=offsets)]
    return write_run(tmp_path / "run", table(rows))


def _rows(markdown: str) -> list[dict[str, str]]:
    lines = [ln for ln in markdown.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in ln.strip("|").split("|")), strict=True)) for ln in lines[2:]]


def test_roi_backtest_and_python_m_roi_backtest_print_the_same_held_back_prediction(tmp_path, capsys):
    run = _run(tmp_path)
    args = ["backtest", str(run), "--fit-up-to", "1000", "--metric", "mrr@20"]
    assert sweeps.cli.main(args) == 0  # the `roi` console script
    from_roi_command = capsys.readouterr().out
    assert roi.cli.main(args) == 0  # `python -m roi`, in process
    assert capsys.readouterr().out == from_roi_command
    (row,) = _rows(from_roi_command)  # fitted on 100..1000, the one larger measured size is predicted
    assert (row["dataset"], row["metric"], row["size"]) == ("designed", "mrr@20", "2000")
    assert float(row["measured"]) == np.round(power(2000), 4)
    assert abs(float(row["error"])) < 1e-3

    done = subprocess.run(
        [sys.executable, "-m", "roi", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == from_roi_command


def test_roi_backtest_on_a_missing_run_folder_is_one_message_and_exit_code_2(tmp_path, capsys):
    missing = tmp_path / "nothing-here"
    assert sweeps.cli.main(["backtest", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err


def test_roi_help_lists_backtest(capsys):
    try:
        sweeps.cli.main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "backtest" in capsys.readouterr().out
