"""The docs hold together: every relative link in README.md and docs/ names a file that exists, docs/README.md
indexes every doc, and the CLI's fallback fix points to the sweep-file reference that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweeps.cli import _message
from sweeps.errors import UserError

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_name_files_that_exist(page):
    missing = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.relative_to(REPO)} links to {missing}"


def test_docs_readme_indexes_every_doc():
    index = (REPO / "docs" / "README.md").read_text(encoding="utf-8")
    linked = {(REPO / "docs" / t.split("#", 1)[0]).resolve() for t in LINK.findall(index)}
    docs = {p.resolve() for p in (REPO / "docs").glob("*.md") if p.name != "README.md"}
    docs |= {p.resolve() for p in (REPO / "docs").glob("*/README.md")}
    assert not docs - linked, sorted(str(p.relative_to(REPO)) for p in docs - linked)


def test_a_fix_without_its_own_hint_points_to_the_sweep_file_reference():
    text = _message(UserError("must be > 0, got -1", where="s.yaml", field="sweep.min_steps"))
    assert "fix: correct sweep.min_steps in s.yaml" in text
    (doc,) = re.findall(r"docs/[\w-]+\.md", text)
    assert (REPO / doc).is_file() and doc == "docs/sweep-files.md"


def test_the_python_api_example_in_roi_md_runs_and_prints_what_the_doc_says(capsys, monkeypatch):
    """docs/roi.md's notebook example, run as written from the repository root: its printed lines are the doc's."""
    text = (REPO / "docs" / "roi.md").read_text(encoding="utf-8").split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    shown = re.search(r"It prints.*?```\n(.*?)```", text, re.S).group(1).splitlines()
    monkeypatch.chdir(REPO)
    exec(compile(code, "docs/roi.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(shown) == 3
    for line, doc in zip(printed, shown, strict=True):
        assert line.startswith(doc.removesuffix("..."))
    assert printed[0].startswith("found | mrr@20 gains +2.6% with 2,000 items; past ~248 items")
