"""How to cite the course and where its corrections are listed (CITATION.cff, the errata page).

The citation metadata must stay true to the package (its version), the intro page must say
how to cite and link the errata, and every erratum must be dated, newest first, and name
the page it corrects, so that a reader can tell which version they read was wrong where.
"""
from __future__ import annotations

import datetime as dt
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from conftest import toc_entries  # noqa: E402  (the repository's root conftest.py)

ERRATA = ROOT / "book" / "errata.md"
CFF_REQUIRED = ("cff-version", "message", "title", "authors", "version", "date-released",
                "license", "repository-code", "url")


def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_cff_has_what_github_and_zotero_need():
    cff = citation()
    missing = [key for key in CFF_REQUIRED if key not in cff]
    assert not missing, f"CITATION.cff lacks {missing}"
    assert cff["cff-version"] == "1.2.0"
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    dt.date.fromisoformat(str(cff["date-released"]))


def test_citation_version_is_the_package_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert str(citation()["version"]) == project["version"], (
        "CITATION.cff and pyproject.toml disagree on the version: bump both")


def test_intro_says_how_to_cite_and_links_errata_and_claims():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert re.search(r"^## .*how to cite", intro, re.I | re.M)
    assert "CITATION.cff" in intro and f"version {citation()['version']}" in intro.lower()
    assert "(errata.md)" in intro and "(claims.md)" in intro


def test_errata_page_is_in_the_toc():
    assert ERRATA.resolve() in {p.resolve() for p in toc_entries()}


def test_errata_are_dated_newest_first_and_name_their_page():
    text = ERRATA.read_text()
    assert "issues/new" in text, "the errata page must link to where a new one is reported"
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert sections, "no dated errata"
    dates = [dt.date.fromisoformat(s.split()[0]) for s in sections]
    assert dates == sorted(dates, reverse=True), "errata must be newest first"
    for section, date in zip(sections, dates):
        items = re.findall(r"^- (.+)$", section, flags=re.M)
        assert items, f"the errata of {date} list nothing"
        for item in items:
            assert re.search(r"\]\([\w./#-]+\.md(#[\w-]+)?\)", item), (
                f"an erratum of {date} does not link the page it corrects: {item[:80]}")
