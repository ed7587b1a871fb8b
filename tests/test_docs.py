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
