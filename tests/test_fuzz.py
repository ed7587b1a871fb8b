"""Property-based fuzzing of what a user hands the tool: sweep files and CSV data files, through ``roi trial``.

Every generated case runs ``roi trial FILE --size N --epochs E`` in this process (``sweeps.cli.main``): the
sweep file's loader, the data's loader, the split and every check ``roi trial`` makes before it trains
(``sweeps.runs.open_run``). Two stand-ins keep a case in milliseconds: the model is a stub whose towers
pass items through (``build_model``; models have their own bad-input tests), and the first trial raises
``TrainingWouldStart`` (``run_trial``): reaching it means every check passed. The property: each case ends
there, or in ONE clear error (exit code 2, stderr ``error: ...`` with a ``fix:`` line, no traceback); any
other exception fails the test with the case that caused it (hypothesis shrinks it).

Budgets: the fast tier (``make test``) runs ``FAST`` cases per property, derandomized so CI is repeatable;
the full tier (``make test-all``, ``@pytest.mark.slow``) runs ``FULL`` random ones. docs/reliability.md
publishes the counts and what the generators cover.
"""

from __future__ import annotations

import csv
import io
import shutil
import string
import tempfile
import types
from collections import Counter
from pathlib import Path

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sweeps.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweeps" / "configs" / "smoke.yaml"
FAST, FULL = 50, 300
OUTCOMES: Counter = Counter()  # what the cases ended in, for docs/reliability.md (printed by the slow tests)


class TrainingWouldStart(Exception):
    """Raised where ``roi trial`` would start training: every check before it passed."""


def _stub_model(cfg, *, task):
    if cfg.kind not in ("hf-text", "clip", "dual", "torchvision", "efficientnet-lite0"):
        raise AssertionError(f"an unknown model.kind reached the model: {cfg.kind!r}")
    tower = types.SimpleNamespace(preprocess=lambda items: list(items), preprocess_key=lambda: None)
    return types.SimpleNamespace(query_tower=tower, doc_tower=tower)


def _refuse_to_train(*args, **kwargs):
    raise TrainingWouldStart


@pytest.fixture
def roi_trial(monkeypatch, capsys):
    """``run(sweep_file, *argv) -> "trained" | "error"``; asserts the error is one clear message."""
    import sweeps.local
    import sweeps.prepare

    monkeypatch.setattr(sweeps.prepare, "build_model", _stub_model)
    monkeypatch.setattr(sweeps.local, "run_trial", _refuse_to_train)

    def run(path: Path, *argv: str) -> str:
        capsys.readouterr()
        storage = path.parent / "runs"
        try:
            code = main(["trial", str(path), *argv, "--storage", str(storage)])
        except TrainingWouldStart:
            OUTCOMES["trained"] += 1
            return "trained"
        out, err = capsys.readouterr()
        assert code == 2, f"exit {code}: {err}"
        assert err.startswith("error: ") and "\n  fix: " in err, err
        assert "Traceback" not in err and out.count("error:") == 0, err
        OUTCOMES["error"] += 1
        OUTCOMES[_kind(err)] += 1
        return "error"

    return run


def _kind(err: str) -> str:
    """A coarse name of the error (for the counts in docs/reliability.md)."""
    first = err.splitlines()[0]
    for key in ("invalid YAML", "given twice", "unknown key", "expected", "is required", "not allowed", "line "):
        if key in first:
            return f"error: {key}"
    return "error: other"


# ------------------------------------------------------------------------------------------- strategies

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
HUGE_TEXT = st.builds(lambda c, n: c * n, st.sampled_from("ax\"'\n,;é\u2028"), st.integers(10_000, 300_000))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
    st.sampled_from(["auto", "epochs", "data_size", "2e-5", ".nan", "-inf", "1e400", "package:os", "..", "/"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=3))


def _paths(raw: dict) -> list[tuple[str, ...]]:
    out = []
    for key, value in raw.items():
        out.append((key,))
        if isinstance(value, dict):
            out += [(key, *p) for p in _paths(value)]
    return out


def _set(raw: dict, path: tuple[str, ...], value) -> None:
    node = raw
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _delete(raw: dict, path: tuple[str, ...]) -> None:
    node = raw
    for key in path[:-1]:
        node = node[key]
    node.pop(path[-1], None)


@st.composite
def sweep_files(draw, base: dict) -> str:
    """The base sweep file with 1-4 mutations: values of any type or size, deleted or unknown keys, sections
    replaced by scalars or lists, a duplicated key, unicode, then (sometimes) a text-level edit."""
    import copy

    raw = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(raw) or [("name",)]
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["value", "value", "delete", "unknown", "huge"]))
        if action == "value":
            _set(raw, path, draw(VALUES))
        elif action == "delete":
            _delete(raw, path)
        elif action == "unknown":
            _set(raw, (*path[:-1], draw(TEXT) or "x"), draw(VALUES))
        else:
            _set(raw, path, draw(HUGE_TEXT | st.integers(10**12, 10**40)))
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    edit = draw(st.sampled_from(["none", "none", "duplicate", "truncate", "insert", "tabs"]))
    lines = text.splitlines(keepends=True)
    if edit == "duplicate" and lines:  # a key given twice, at the same depth (a line that opens a key)
        keys = [line for line in lines if ":" in line and not line.lstrip().startswith("-")]
        if keys:
            line = draw(st.sampled_from(keys))
            indent = line[: len(line) - len(line.lstrip())]
            text += f"{indent}{line.strip().split(':')[0]}: 1\n" if not indent else text.replace(line, line * 2, 1)
    elif edit == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif edit == "insert":
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(["[", "{", ": ", "\t", '"', "&a", "*a", "!!python/object:os.system"]))
            + text[at:]
        )
    elif edit == "tabs":
        text = text.replace("  ", "\t")
    return text


LABELS = st.sampled_from(["a", "b", "c", "d", "ümlaut", "a b", "a,b", ""])
CELL = st.one_of(
    st.text(alphabet=string.ascii_letters + string.digits + " ", min_size=1, max_size=20),
    TEXT,
    st.sampled_from(['"', '""', ",", ";", "\n", "\r\n", " ", "\x00", "\ufeff"]),
    HUGE_TEXT,
)


@st.composite
def csv_files(draw) -> tuple[bytes, str]:
    """(bytes of a CSV, its format): delimiters, quoting, encodings, empty and huge fields, one label, missing,
    extra or renamed columns, line endings, blank lines; sometimes valid, mostly not."""
    fmt = draw(st.sampled_from(["labeled-csv", "labeled-csv", "pairs-csv"]))
    columns = ["text", "label"] if fmt == "labeled-csv" else ["query", "document"]
    header = draw(st.sampled_from(["keep", "keep", "keep", "drop one", "rename", "extra", "none"]))
    if header == "drop one":
        columns = columns[:1]
    elif header == "rename":
        columns = [columns[0], draw(TEXT) or "x"]
    elif header == "extra":
        columns = [*columns, "note"]
    n_rows = draw(st.integers(0, 60))
    one_label = draw(st.booleans())
    rows = []
    for i in range(n_rows):
        if fmt == "labeled-csv":
            row = [draw(CELL) if draw(st.integers(0, 9)) == 0 else f"request {i}", "a" if one_label else draw(LABELS)]
        else:
            row = [f"query {i}", draw(CELL) if draw(st.integers(0, 9)) == 0 else f"doc {i % 7}"]
        rows.append(row + ["x"] * (len(columns) - 2) if len(columns) > 2 else row[: len(columns)])
    delimiter = draw(st.sampled_from([",", ",", ";", "\t", "|"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONE]))
    buf = io.StringIO()
    writer = csv.writer(
        buf, delimiter=delimiter, quoting=quoting, escapechar="\\", lineterminator=draw(st.sampled_from(["\n", "\r\n"]))
    )
    if header != "none":
        writer.writerow(columns)
    for row in rows:
        try:
            writer.writerow(row)
        except csv.Error:  # the csv module cannot write some records (a lone empty field unquoted): write it raw
            buf.write(delimiter.join(row) + "\n")
    text = buf.getvalue()
    if draw(st.integers(0, 5)) == 0:
        text += "\n\n" + draw(TEXT)  # blank lines and a stray last line
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 20)) == 0:
        data = draw(st.binary(max_size=200))  # not text at all
    return data, fmt


# ------------------------------------------------------------------------------------------- the tests


def _base(folder: Path) -> dict:
    """smoke.yaml on a small valid CSV (10 labels x 6): a base every mutation starts from."""
    data = folder / "base.csv"
    data.write_text(
        "text,label\n" + "".join(f"request {j} of topic {i},topic{i}\n" for i in range(10) for j in range(6))
    )
    raw = yaml.safe_load(SMOKE.read_text())
    raw["data"] = {"format": "labeled-csv", "path": str(data), "name": "fuzz"}
    raw["sweep"]["sizes"] = [8, 16]
    return raw


def _sweep_file_property(roi_trial, n: int, *, derandomize: bool):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-sweep-"))
    base = _base(folder)

    @settings(
        max_examples=n,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        text=sweep_files(base),
        size=st.sampled_from(["0", "8", "-3", "100000000"]),
        epochs=st.sampled_from(["1", "0", "-1"]),
    )
    def check(text, size, epochs):
        case = Path(tempfile.mkdtemp(dir=folder))
        path = case / "sweep.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        roi_trial(path, "--size", size, "--epochs", epochs)

    try:
        check()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _csv_property(roi_trial, n: int, *, derandomize: bool):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-csv-"))
    base = _base(folder)

    @settings(
        max_examples=n,
        deadline=None,
        derandomize=derandomize,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=csv_files(), delimiter=st.sampled_from(["", "", ";", "|"]))
    def check(case, delimiter):
        data, fmt = case
        where = Path(tempfile.mkdtemp(dir=folder))
        (where / "data.csv").write_bytes(data)
        raw = {**base, "data": {"format": fmt, "path": "data.csv", "delimiter": delimiter}}
        (where / "sweep.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        roi_trial(where / "sweep.yaml", "--size", "4")

    try:
        check()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_fuzzed_sweep_files_end_in_a_trial_or_one_clear_error(roi_trial, capsys):
    OUTCOMES.clear()
    _sweep_file_property(roi_trial, FAST, derandomize=True)
    with capsys.disabled():  # shown with -s (docs/reliability.md quotes it)
        print(f"\nsweep files: {sum(OUTCOMES[k] for k in ('trained', 'error'))} runs, outcomes {dict(OUTCOMES)}")


def test_fuzzed_csv_files_end_in_a_trial_or_one_clear_error(roi_trial, capsys):
    OUTCOMES.clear()
    _csv_property(roi_trial, FAST, derandomize=True)
    with capsys.disabled():
        print(f"\nCSV files: {sum(OUTCOMES[k] for k in ('trained', 'error'))} runs, outcomes {dict(OUTCOMES)}")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzzed_sweep_files_full_budget(roi_trial, capsys):
    OUTCOMES.clear()
    _sweep_file_property(roi_trial, FULL, derandomize=False)
    with capsys.disabled():
        print(f"\nsweep files: {sum(OUTCOMES[k] for k in ('trained', 'error'))} runs, outcomes {dict(OUTCOMES)}")


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzzed_csv_files_full_budget(roi_trial, capsys):
    OUTCOMES.clear()
    _csv_property(roi_trial, FULL, derandomize=False)
    with capsys.disabled():
        print(f"\nCSV files: {sum(OUTCOMES[k] for k in ('trained', 'error'))} runs, outcomes {dict(OUTCOMES)}")
