"""Every chapter in _toc.yml is executed by nbval in the same test run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from conftest import toc_entries, toc_notebooks  # noqa: E402  (the repository's root conftest.py)


def test_every_toc_entry_exists():
    missing = [str(p.relative_to(ROOT)) for p in toc_entries() if not p.is_file()]
    assert not missing, f"_toc.yml names files that do not exist: {missing}"


def test_no_ipynb_beside_a_chapter_source():
    clashes = [str(p) for p in (ROOT / "book").rglob("*.md") if p.with_suffix(".ipynb").exists()]
    assert not clashes, f"Jupyter Book refuses two sources for one page: {clashes}"


@pytest.mark.notebooks
def test_every_toc_notebook_is_run_by_nbval(request):
    collected = {item.parent.path.resolve() for item in request.session.items
                 if type(item.parent).__name__ == "MarkdownNotebook"}
    wanted = {p.resolve() for p in toc_notebooks()}
    assert wanted, "the table of contents lists no notebooks"
    missing = sorted(str(p.relative_to(ROOT)) for p in wanted - collected)
    assert not missing, (f"chapters in _toc.yml that this run does not execute: {missing}; "
                         "run `make test` (pytest tests companion book --nbval-lax --nbval-current-env)")


def test_references_bib_parses_and_has_no_duplicate_keys():
    from pybtex.database import parse_file

    text = (ROOT / "references.bib").read_text()
    entries = parse_file(str(ROOT / "references.bib")).entries  # raises on a syntax error
    import re

    keys = re.findall(r"^@\w+\{([^,\s]+),", text, re.M)
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"references.bib defines these keys twice: {duplicates}"
    assert len(entries) == len(keys)
