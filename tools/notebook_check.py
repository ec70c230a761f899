"""Check a notebook for the site as Colab and Jupyter will show it: plain CommonMark, no MyST.

``problems(nb)`` renders every markdown cell with markdown-it-py's ``commonmark`` preset
(what Jupyter and Colab render, less their ``$`` math) and reports what would reach the
reader as raw syntax: a role (``{cite}`` before inline code), a directive (a fence whose
info string is ``{name}``, or a ``:::`` line), a label ``(name)=``, an equation label
``$$ (name)``, a directive option line (``:label: ...``), a left-over solution marker,
and any empty code block. ``differences(nb, page_html)`` compares the notebook with its
page on the site: its equation numbers must be the page's, in the same order, and every
number in its text must appear on the page.

``python tools/notebook_check.py _build/html [--student]`` checks every notebook under
``_build/html/_notebooks`` against its page (and, for the student edition, that none
holds a solution), and exits 1 on any problem.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from markdown_it import MarkdownIt

NOTEBOOKS_DIR = "_notebooks"
COMMONMARK = MarkdownIt("commonmark")
ROLE_BEFORE_CODE = re.compile(r"\{[A-Za-z][\w:.+-]*\}$")
PROSE_PATTERNS = {
    "directive": re.compile(r"^\s*(:{3,}|`{3,}|~{3,})\s*\{", re.M),
    "label": re.compile(r"^\s*\([^()\s]+\)=\s*$", re.M),
    "equation label": re.compile(r"\$\$\s*\([^()\s]+\)"),
    "directive option": re.compile(r"^:(label|class|name|tags|pyobject|filter|format):", re.M),
    "role": re.compile(r"\{(glue|cite|eq|ref|doc|term|numref|py|glue:text)[:\w]*\}`"),
    "solution marker": re.compile(r"<!-- solution-(start|end)"),
}
NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")
TAG = re.compile(r"\\tag\{([^{}]*)\}")
SOLUTION = re.compile(r"<summary>Solution to ")


def prose(tokens) -> str:
    """The text a reader sees in rendered markdown, without code (inline or block)."""
    parts = []
    for token in tokens:
        if token.type == "inline":
            parts += [child.content for child in token.children
                      if child.type in ("text", "html_inline")]
            parts.append("\n")
        elif token.type == "html_block":
            parts.append(token.content)
    return "".join(parts)


def cell_problems(source: str) -> list[str]:
    found = []
    tokens = COMMONMARK.parse(source)
    for token in tokens:
        if token.type == "fence" and token.info.strip().startswith("{"):
            found.append(f"directive {token.info.strip()}")
        if token.type in ("fence", "code_block") and not token.content.strip():
            found.append("empty code block")
        if token.type == "inline":
            children = token.children or []
            for before, after in zip(children, children[1:]):
                if before.type == "text" and after.type == "code_inline" and ROLE_BEFORE_CODE.search(before.content):
                    found.append(f"role {ROLE_BEFORE_CODE.search(before.content)[0]}`{after.content}`")
    text = prose(tokens)
    for what, pattern in PROSE_PATTERNS.items():
        found += [f"{what} {m.group(0).strip()!r}" for m in pattern.finditer(text)]
    return found


def problems(nb: nbformat.NotebookNode) -> list[str]:
    """Every piece of MyST or empty code in the notebook's markdown, as 'cell i: what'."""
    return [f"cell {i}: {what}" for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
            for what in cell_problems(cell.source)]


def markdown_text(nb: nbformat.NotebookNode) -> str:
    return "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")


def page_text(page_html: str) -> tuple[str, list[str]]:
    """The page's main text (math as its TeX source) and its equation numbers, in order."""
    soup = BeautifulSoup(page_html, "html.parser")
    main = soup.find("main") or soup
    numbers = [span.get_text(strip=True).strip("()") for span in main.select("span.eqno")]
    return main.get_text(" "), numbers


def differences(nb: nbformat.NotebookNode, page_html: str) -> list[str]:
    """Where the notebook's numbers are not the page's."""
    found = []
    site_text, site_equations = page_text(page_html)
    markdown = markdown_text(nb)
    equations = TAG.findall(markdown)
    if equations != site_equations:
        found.append(f"equation numbers {equations} on the notebook, {site_equations} on the page")
    on_site = set(NUMBER.findall(site_text))
    rendered = prose(COMMONMARK.parse(markdown))
    missing = sorted(set(NUMBER.findall(rendered)) - on_site)
    if missing:
        found.append(f"numbers in the text that the page does not show: {missing}")
    return found


def check_site(site: Path, student: bool = False) -> list[str]:
    """Every problem of every notebook under site/_notebooks, as 'path: cell i: what'.

    ``student``: a folded solution is a problem too (the student edition has none).
    """
    found = []
    notebooks = sorted((site / NOTEBOOKS_DIR).rglob("*.ipynb"))
    if not notebooks:
        return [f"{site / NOTEBOOKS_DIR}: no notebooks"]
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        name = path.relative_to(site / NOTEBOOKS_DIR).with_suffix("")
        found += [f"{name}: {p}" for p in problems(nb)]
        if student and SOLUTION.search(markdown_text(nb)):
            found.append(f"{name}: a solution in the student edition")
        page = site / name.with_suffix(".html")
        if not page.exists():
            found.append(f"{name}: no page {page}")
            continue
        found += [f"{name}: {d}" for d in differences(nb, page.read_text(encoding="utf-8"))]
    return found


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    site = Path(args[0] if args else "_build/html")
    found = check_site(site, student="--student" in sys.argv[1:])
    for line in found:
        print(f"notebook check: {line}", file=sys.stderr)
    print(f"notebook check: {len(found)} problem(s) in {site / NOTEBOOKS_DIR}")
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
