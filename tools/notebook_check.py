"""Check a notebook for the site as Colab and Jupyter will show it: plain CommonMark, no MyST.

``problems(nb)`` renders every markdown cell with markdown-it-py's ``commonmark`` preset
(what Jupyter and Colab render, less their ``$`` math) and reports what would reach the
reader as raw syntax: a role (``{cite}`` before inline code), a directive (a fence whose
info string is ``{name}``, or a ``:::`` line), a label ``(name)=``, an equation label
``$$ (name)``, a directive option line (``:label: ...``), a left-over solution marker,
and any empty code block. ``differences(nb, page_html)`` compares the notebook with its
page on the site: the numbers of its markdown must be those of the page's prose, in the
same order (so a glued value formatted otherwise, a wrong equation or exercise number, a
citation's year, a missing or extra solution all show), and its equation numbers the
page's.

``python tools/notebook_check.py _build/html [--student]`` checks every notebook under
``_build/html/_notebooks`` against its page (and, for the student edition, that none
holds a solution), and exits 1 on any problem.
"""
from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

import nbformat
from bs4 import BeautifulSoup
from markdown_it import MarkdownIt
from mdit_py_plugins.dollarmath import dollarmath_plugin

NOTEBOOKS_DIR = "_notebooks"
COMMONMARK = MarkdownIt("commonmark")
# For the numbers a reader sees: Jupyter and Colab keep $ math away from the Markdown, so
# the _ in $\mathcal{L}_1$ is not emphasis (plain CommonMark would eat it and show "L1").
WITH_MATH = MarkdownIt("commonmark").use(dollarmath_plugin, double_inline=True)
MATH_INLINE = ("math_inline", "math_inline_double")
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
    """The text a reader sees in rendered markdown, without code (inline or block); math as TeX."""
    parts = []
    for token in tokens:
        if token.type == "inline":
            parts += [child.content if child.type in ("text", "html_inline", *MATH_INLINE) else "\n"
                      for child in token.children
                      if child.type in ("text", "html_inline", "softbreak", "hardbreak", *MATH_INLINE)]
            parts.append("\n")
        elif token.type in ("html_block", "math_block"):
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


# What a page shows that its notebook holds elsewhere or not at all: code cells (inputs and
# outputs are code, not markdown), included code, inline code, equation numbers (compared
# on their own), permalinks, the bibliography's back-references, the page footer.
NOT_PROSE = ["div.cell", "div.highlight", "code.literal", "span.eqno", "a.headerlink",
             "span.backrefs", "footer", ".prev-next-area"]


def page_numbers(page_html: str) -> tuple[list[str], list[str]]:
    """The numbers in the page's prose, in order, and its equation numbers, in order."""
    soup = BeautifulSoup(page_html, "html.parser")
    main = soup.find("article") or soup.find("main") or soup
    # "(7)" and the equation's permalink "#"
    equations = [re.sub(r"^\((.*?)\).*$", r"\1", span.get_text(strip=True)) for span in main.select("span.eqno")]
    for selector in NOT_PROSE:
        for element in main.select(selector):
            element.decompose()
    return NUMBER.findall(main.get_text(" ")), equations


def notebook_numbers(nb: nbformat.NotebookNode) -> tuple[list[str], list[str]]:
    """The numbers in the notebook's rendered markdown (math as TeX), and its ``\\tag``s."""
    markdown = markdown_text(nb)
    equations = TAG.findall(markdown)
    return NUMBER.findall(prose(WITH_MATH.parse(TAG.sub("", markdown)))), equations


def differences(nb: nbformat.NotebookNode, page_html: str) -> list[str]:
    """Where the notebook's numbers are not the page's: the same numbers in the same order
    (every glued value, citation year, exercise number, number in the prose or the math),
    and the same equation numbers."""
    found = []
    site, site_equations = page_numbers(page_html)
    mine, equations = notebook_numbers(nb)
    if equations != site_equations:
        found.append(f"equation numbers {equations} on the notebook, {site_equations} on the page")
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=mine, b=site, autojunk=False).get_opcodes():
        if op != "equal":
            before = " ".join(mine[max(0, i1 - 3):i1])
            found.append(f"numbers {mine[i1:i2]} where the page has {site[j1:j2]} (after ...{before})")
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
