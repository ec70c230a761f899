"""Static checks of the built site that a -W Sphinx build does not make.

Usage: python tests/check_site.py _build/html

Fails (exit 1) when a cell output on a page shows a Python traceback or stderr
(an error raised while a figure is drawn is printed, not raised, so the build
itself passes), when figures a page draws are missing from it, when a page
loads a script from the network, or when the local MathJax it points to is missing.
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
    shows = sum("plt.show()" in cell.get_text() for cell in soup.select("div.cell_input"))
    images = sum(len(output.find_all("img")) for output in outputs)
    if images < shows:
        problems.append(f"{rel}: {shows} cells call plt.show() but the page has {images} output images "
                        "(is MPLBACKEND set for the kernel?)")
    for script in soup.find_all("script", src=True):
        src = script["src"]
        if src.startswith(("http://", "https://", "//")):
            problems.append(f"{rel}: loads a script from the network: {src}")
        elif "mathjax" in src.lower() and not (page.parent / src.split("?")[0]).resolve().is_file():
            problems.append(f"{rel}: MathJax script {src} is missing from the site")
    return problems


def check(site: Path) -> list[str]:
    pages = sorted(p for p in site.rglob("*.html")
                   if not {"_vendor", "_static", "_modules", "_sources"} & set(p.relative_to(site).parts))
    if not pages:
        return [f"{site}: no HTML pages found; build the site first (make book)"]
    return [problem for page in pages for problem in check_page(page, site)]


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    problems = check(site)
    for line in problems:
        print(line)
    print(f"check_site: {len(problems)} problem(s) in {site}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
