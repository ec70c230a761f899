"""Static checks of the built site that a -W Sphinx build does not make.

Usage: python tests/check_site.py _build/html

Usage: python tests/check_site.py _build/student/_build/html --student

Fails (exit 1) when a cell output on a page shows a Python traceback or stderr
(an error raised while a figure is drawn is printed, not raised, so the build
itself passes), when figures a page draws are missing from it, when a page or a
slide deck loads a script or a stylesheet from the network, when a local script or
stylesheet it points to (MathJax, reveal.js, the widget manager) is missing, or when
a chapter has no slide deck. With --student: also when a solution is left on a page,
in a deck, or in a downloadable source or notebook.
"""
from __future__ import annotations

import sys
from pathlib import Path

from bs4 import BeautifulSoup


def check_page(page: Path, site: Path) -> list[str]:
    rel = page.relative_to(site)
    soup = BeautifulSoup(page.read_text(encoding="utf-8", errors="replace"), "html.parser")
    problems = []
    outputs = soup.select("div.cell_output")
    for output in outputs:
        if output.select(".output.traceback, .output.stderr") or "Traceback (most recent call last)" in output.get_text():
            problems.append(f"{rel}: a cell output shows an error or a traceback")
            break
    # a top-level plt.show() draws a figure into the page; one inside a function
    # (a widget callback) draws only when a live kernel calls it
    shows = sum(any(line.startswith("plt.show()") for line in cell.get_text().splitlines())
                for cell in soup.select("div.cell_input"))
    images = sum(len(output.find_all("img")) for output in outputs)
    if images < shows:
        problems.append(f"{rel}: {shows} cells call plt.show() but the page has {images} output images "
                        "(is MPLBACKEND set for the kernel?)")
    assets = [(t["src"], "script") for t in soup.find_all("script", src=True)]
    assets += [(t["href"], "stylesheet") for t in soup.find_all("link", href=True) if "stylesheet" in t.get("rel", [])]
    for url, kind in assets:
        if url.startswith(("http://", "https://", "//")):
            problems.append(f"{rel}: loads a {kind} from the network: {url}")
        elif not (page.parent / url.split("?")[0].split("#")[0]).resolve().is_file():
            problems.append(f"{rel}: {kind} {url} is missing from the site")
    button = soup.select_one("a.btn-slides-button")
    if button is not None and not (page.parent / button["href"]).resolve().is_file():
        problems.append(f"{rel}: its slide deck {button['href']} is missing (tools/slides.py)")
    return problems


def check_student(site: Path, pages: list[Path]) -> list[str]:
    """The student edition: no solution on a page or deck, nor in what can be downloaded."""
    problems = []
    for page in pages:
        soup = BeautifulSoup(page.read_text(encoding="utf-8", errors="replace"), "html.parser")
        if soup.select(".solution") or "Solution to" in soup.get_text():
            problems.append(f"{page.relative_to(site)}: shows a solution")
    for folder in ("_sources", "_notebooks"):
        for path in sorted((site / folder).rglob("*")):
            if path.suffix not in {".md", ".ipynb"}:
                continue
            text = path.read_text(encoding="utf-8")
            # a MyST source holds '{solution'; a readers' notebook its converted form, 'Solution to ...'
            if "{solution" in text or (path.suffix == ".ipynb" and "Solution to" in text):
                problems.append(f"{path.relative_to(site)}: holds a solution")
    return problems


def check(site: Path, student: bool = False) -> list[str]:
    pages = sorted(p for p in site.rglob("*.html")
                   if not {"_vendor", "_static", "_modules", "_sources"} & set(p.relative_to(site).parts))
    if not pages:
        return [f"{site}: no HTML pages found; build the site first (make book)"]
    problems = [problem for page in pages for problem in check_page(page, site)]
    return problems + (check_student(site, pages) if student else [])


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    site = Path(args[0] if args else "_build/html")
    problems = check(site, student="--student" in sys.argv[1:])
    for line in problems:
        print(line)
    print(f"check_site: {len(problems)} problem(s) in {site}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
