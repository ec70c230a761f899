"""The whole book as one PDF, printed from the built site by headless Chromium.

Usage: ``python tools/book_pdf.py [_build/html]`` (``make book`` runs it). Writes
``course.pdf`` at the top of the site; every page's header links to it (``tools/course_site.py``).

The PDF is the site itself, not a second build: every page of ``_toc.yml`` but the API
reference (``LEFT_OUT``), in reading order, is opened from the built site on a local server
(``tools/browser.py``: requests that leave 127.0.0.1 are blocked), MathJax typesets its
equations, and Chromium prints it with the page's print styles plus ``PRINT_CSS`` below (no
navigation, the article full width, hidden code cells and solutions left closed as on the
site). So the PDF has exactly the site's executed numbers, figures, equation numbers and
citations. ``pypdf`` joins the pages into one file with a bookmark per page (its title), so
a PDF reader's outline is the table of contents. ``tests/test_book_pdf.py`` checks it.
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

from pypdf import PdfReader, PdfWriter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import offline_page, serve, wait_for_mathjax  # noqa: E402
from chapters import ROOT, TOC, toc_entries  # noqa: E402

PDF_NAME = "course.pdf"
# The API reference stays on the site: printed, its signatures fill about a hundred pages
# (a third of the book) that a reader looks up rather than reads; the package is beside it.
LEFT_OUT = {"book/api"}
PRINT_CSS = """
@page { size: A4; margin: 16mm 14mm 18mm 14mm; }
.bd-header, .bd-header-announcement, .bd-sidebar-primary, .bd-sidebar-secondary,
.header-article, .bd-header-article, .prev-next-area, .bd-footer, .bd-footer-article,
.bd-footer-content, footer, .skip-link, .search-button, .theme-switch-button,
.headerlink, .toggle-secondary-sidebar, #pst-back-to-top, .btn-slides-button { display: none !important; }
.bd-main, .bd-content, .bd-article-container, .bd-page-width, .bd-container,
.bd-container__inner, article.bd-article { max-width: 100% !important; width: 100% !important;
  margin: 0 !important; padding: 0 !important; }
body { font-size: 11pt; }
img, figure, .cell_output, div.math, table { break-inside: avoid; }
h1, h2, h3 { break-after: avoid; }
pre { white-space: pre-wrap; word-break: break-word; }
"""


def page_names(toc: Path = TOC) -> list[str]:
    """The site's page names (``book/vae``) of the toc's files, in reading order, less ``LEFT_OUT``."""
    names = [path.relative_to(toc.parent).with_suffix("").as_posix()
             for path in toc_entries(toc) if path.is_file()]
    return [name for name in names if name not in LEFT_OUT]


def print_page(page, url: str) -> tuple[str, bytes]:
    """(title, PDF bytes) of one page of the site as Chromium prints it."""
    page.goto(url, wait_until="load")
    wait_for_mathjax(page)
    page.add_style_tag(content=PRINT_CSS)
    page.emulate_media(media="print")
    title = page.locator("article h1").first.inner_text().strip().rstrip("#").strip()
    return title, page.pdf(format="A4", print_background=True, prefer_css_page_size=True,
                           display_header_footer=True, header_template="<span></span>",
                           footer_template='<div style="font-size:8px;width:100%;text-align:center">'
                                           '<span class="title"></span> - <span class="pageNumber">'
                                           '</span></div>')


def build(site: Path, names: list[str]) -> PdfWriter:
    """Print every page and join them, one outline entry per page."""
    writer = PdfWriter()
    with serve(site) as base, offline_page() as page:
        for name in names:
            if not (site / f"{name}.html").is_file():
                raise SystemExit(f"{site / name}.html is missing: build the site first (make book)")
            title, data = print_page(page, f"{base}/{name}.html")
            first = len(writer.pages)
            writer.append(PdfReader(io.BytesIO(data)))
            writer.add_outline_item(title=title, page_number=first)
            print(f"  {name}: {len(writer.pages) - first} pages", flush=True)
    writer.add_metadata({"/Title": "Generative AI on a laptop CPU", "/Author": "The course authors"})
    return writer


def main(argv: list[str]) -> int:
    site = Path(argv[1]) if len(argv) > 1 else ROOT / "_build" / "html"
    writer = build(site, page_names())
    out = site / PDF_NAME
    with out.open("wb") as f:
        writer.write(f)
    print(f"The whole book, {len(writer.pages)} pages: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
