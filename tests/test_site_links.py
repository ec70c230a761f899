"""Every internal link of the built site (pages and slide decks) leads somewhere.

For each page: every relative ``href``/``src`` (links, images, scripts, stylesheets)
names a file of the site, and every ``#anchor`` names an element of its target page.
Run after ``make book`` (``make site-test``).
"""
from __future__ import annotations

import functools
import os
import posixpath
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from bs4 import BeautifulSoup

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("COURSE_SITE", ROOT / "_build" / "html"))
SKIP_DIRS = {"_static", "_vendor"}          # third-party files, not pages of the course
ATTRIBUTES = (("a", "href"), ("link", "href"), ("img", "src"), ("script", "src"), ("source", "src"))


def pages() -> list[Path]:
    if not (SITE / "index.html").is_file():
        return []
    return sorted(p for p in SITE.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(SITE).parts))


@functools.lru_cache(maxsize=None)
def soup_of(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8", errors="replace"), "html.parser")


@functools.lru_cache(maxsize=None)
def anchors_of(path: Path) -> frozenset[str]:
    soup = soup_of(path)
    return frozenset([t["id"] for t in soup.find_all(id=True)] + [t["name"] for t in soup.find_all("a", attrs={"name": True})])


def broken_links(page: Path) -> list[str]:
    problems = []
    for tag, attr in ATTRIBUTES:
        for node in soup_of(page).find_all(tag, attrs={attr: True}):
            url = urlparse(node[attr])
            if url.scheme or url.netloc or node[attr].startswith(("mailto:", "javascript:")):
                continue
            target = page if not url.path else (page.parent / unquote(url.path))
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{node[attr]!r}: no file {target.relative_to(SITE) if target.is_relative_to(SITE) else target}")
                continue
            fragment = unquote(url.fragment)
            if (fragment and target.suffix == ".html" and not fragment.startswith("/")
                    and fragment not in anchors_of(target.resolve())):
                problems.append(f"{node[attr]!r}: no anchor #{fragment} in {posixpath.normpath(str(target.relative_to(SITE)))}")
    return problems


PAGES = pages()


@pytest.mark.skipif(not PAGES, reason=f"no built site in {SITE}: run `make book` first (make site-test does)")
@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(SITE)) for p in PAGES])
def test_internal_links_resolve(page):
    problems = broken_links(page)
    assert not problems, f"{page.relative_to(SITE)}:\n" + "\n".join(problems)


def test_the_site_has_a_deck_for_every_chapter_page():
    if not PAGES:
        pytest.skip(f"no built site in {SITE}")
    with_button = [p for p in PAGES if soup_of(p).select_one("a.btn-slides-button")]
    assert with_button, "no page links to a slide deck"
    decks = {p.resolve() for p in (SITE / "slides").rglob("*.html")}
    for page in with_button:
        target = (page.parent / soup_of(page).select_one("a.btn-slides-button")["href"]).resolve()
        assert target in decks, f"{page.relative_to(SITE)} links to a missing deck"
