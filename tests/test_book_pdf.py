"""The whole book as one PDF (``tools/book_pdf.py``, built by ``make book``).

Run after ``make book`` with ``make site-test``. Read with pypdf: every page of the toc is
in it, in order, under its own bookmark and with its title in the text; no raw TeX or MyST
syntax reached the text (an equation MathJax did not typeset, a role or directive the build
did not resolve); its figures are there; every page header links to it.
"""
from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("COURSE_SITE", ROOT / "_build" / "html"))
sys.path.insert(0, str(ROOT / "tools"))
from book_pdf import PDF_NAME, page_names  # noqa: E402

# What must never reach a reader's text: TeX that MathJax did not typeset, MyST syntax.
RAW = {
    "math delimiter": re.compile(r"\$\$|\\\(|\\\[|\\\)|\\\]"),
    "TeX command": re.compile(r"\\(frac|mathbb|mathcal|operatorname|begin|end|left|right|sum|int|log|sqrt|alpha|theta|mid)\b"),
    "MyST role": re.compile(r"\{(glue|glue:text|cite|cite:p|cite:t|eq|ref|doc|numref|term|py:func)\}`"),
    "MyST directive": re.compile(r"```\{|^:::\{", re.M),
    "MyST label": re.compile(r"^\([\w-]+\)=", re.M),
}


@pytest.fixture(scope="module")
def reader():
    pypdf = pytest.importorskip("pypdf")
    path = SITE / PDF_NAME
    if not path.is_file():
        pytest.skip(f"no {path}: run `make book` first (make site-test does)")
    return pypdf.PdfReader(path)


@pytest.fixture(scope="module")
def text(reader) -> str:
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def normal(line: str) -> str:
    return " ".join(line.split())


def code_text() -> str:
    """Every line of code the site shows (code may hold TeX: matplotlib labels, docstrings)."""
    from bs4 import BeautifulSoup
    lines = []
    for name in page_names():
        soup = BeautifulSoup((SITE / f"{name}.html").read_text(encoding="utf-8"), "html.parser")
        for block in soup.select("pre, code"):
            lines += [normal(line) for line in block.get_text().splitlines()]
    return "\n".join(line for line in lines if line)


@pytest.fixture(scope="module")
def prose(text) -> str:
    """The PDF's text without its code: a line (or a wrapped piece of one) found in a code block goes."""
    code = code_text()
    return "\n".join(line for line in map(normal, text.splitlines()) if line and line not in code)


def titles() -> list[str]:
    """Each toc page's title, from the built HTML (what the PDF must show)."""
    from bs4 import BeautifulSoup
    out = []
    for name in page_names():
        soup = BeautifulSoup((SITE / f"{name}.html").read_text(encoding="utf-8"), "html.parser")
        out.append(soup.select_one("article h1").get_text(" ", strip=True).rstrip("#").strip())
    return out


def squash(s: str) -> str:
    """Letters and digits only, ligatures (the PDF's "ﬂ" in "flows") spelled out."""
    return re.sub(r"\W+", "", unicodedata.normalize("NFKC", s)).lower()


def test_every_page_in_order_with_a_bookmark(reader):
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    assert outline == titles(), "the bookmarks must be the toc's pages in reading order"
    assert len(reader.pages) >= 3 * len(outline), "a chapter printed on a page or two lost content"


def test_every_title_is_in_the_text(text):
    flat = squash(text)
    missing = [t for t in titles() if squash(t) not in flat]
    assert not missing, f"page titles missing from the PDF's text: {missing}"


def test_no_raw_tex_or_myst(prose):
    found = {what: sorted(set(m.group(0) for m in rx.finditer(prose)))[:5]
             for what, rx in RAW.items() if rx.search(prose)}
    assert not found, f"raw syntax in the PDF's text: {found}"


def pdf_images(reader) -> set[int]:
    """The image objects the PDF draws (Chromium puts some inside form XObjects)."""
    found: set[int] = set()

    def walk(resources) -> None:
        xobjects = resources.get_object().get("/XObject") if resources else None
        for ref in (xobjects.get_object().values() if xobjects else []):
            obj = ref.get_object()
            if obj.get("/Subtype") == "/Image":
                found.add(ref.idnum if hasattr(ref, "idnum") else id(obj))
            elif obj.get("/Subtype") == "/Form":
                walk(obj.get("/Resources"))

    for page in reader.pages:
        walk(page.get("/Resources"))
    return found


def site_figures() -> set[str]:
    """The distinct images of the printed pages' articles that print shows (not in a closed toggle)."""
    from bs4 import BeautifulSoup
    srcs = set()
    for name in page_names():
        soup = BeautifulSoup((SITE / f"{name}.html").read_text(encoding="utf-8"), "html.parser")
        for img in soup.select("article img"):
            hidden = any(p.name == "details" or {"toggle-hidden", "dropdown", "solution"} & set(p.get("class", []))
                         for p in img.parents)
            if not hidden:
                srcs.add(img["src"].rsplit("/", 1)[-1])
    return srcs


def test_figures_are_printed(reader):
    printed, shown = len(pdf_images(reader)), len(site_figures())
    assert shown > 20, f"only {shown} figures on the printed pages: is the site built from executed chapters?"
    assert printed >= shown, f"the PDF draws {printed} images, the printed pages show {shown}"


def test_every_page_header_links_to_the_pdf():
    from bs4 import BeautifulSoup
    for name in page_names():
        soup = BeautifulSoup((SITE / f"{name}.html").read_text(encoding="utf-8"), "html.parser")
        links = [a.get("href", "") for a in soup.select(".article-header-buttons a, .header-article a")]
        assert any(href.endswith(PDF_NAME) for href in links), f"{name}: no link to {PDF_NAME} in the header"
