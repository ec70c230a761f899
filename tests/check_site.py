"""Static checks of the built site that a -W Sphinx build does not make.

Usage: python tests/check_site.py _build/html

Fails (exit 1) when a page shows a Python traceback (an error raised while a
figure was drawn is printed, not raised, so the build itself passes), when a
page loads MathJax from anywhere but the site itself, or when the local
MathJax the pages point to is missing.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

TRACEBACK = re.compile(r"Traceback \(most recent call last\)|<span class=\"ne\">\w+Error</span>")
SCRIPT_SRC = re.compile(r"<script[^>]+src=\"([^\"]+)\"")


def check(site: Path) -> list[str]:
    problems = []
    pages = sorted(p for p in site.rglob("*.html") if "_vendor" not in p.parts and "_static" not in p.parts)
    if not pages:
        return [f"{site}: no HTML pages found; build the site first (make book)"]
    for page in pages:
        text = page.read_text(encoding="utf-8", errors="replace")
        rel = page.relative_to(site)
        if TRACEBACK.search(text) and "_modules" not in rel.parts:
            problems.append(f"{rel}: shows a Python traceback")
        for src in SCRIPT_SRC.findall(text):
            if src.startswith(("http://", "https://", "//")):
                problems.append(f"{rel}: loads a script from the network: {src}")
            elif "mathjax" in src.lower() and not (page.parent / src.split("?")[0]).resolve().is_file():
                problems.append(f"{rel}: MathJax script {src} is missing from the site")
    return problems


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    problems = check(site)
    for line in problems:
        print(line)
    print(f"check_site: {len(problems)} problem(s) in {site}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
