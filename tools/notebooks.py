"""Notebooks the site offers for running a chapter elsewhere, and the student edition.

Usage: ``python tools/notebooks.py _build/html [--student]`` (``make book`` and
``make student`` run it after the Sphinx build).

* Writes ``_notebooks/<page>.ipynb`` into the site for every executed chapter in
  ``_build/jupyter_execute``: the executed notebook (outputs included, so a reader
  sees the figures before running anything) with a first cell that installs the
  course's ``companion`` package when it is missing - on Colab, or in any Jupyter
  without ``make install``. The Colab button of each page opens this file from the
  published branch (``tools/course_site.py``).
* ``--student``: removes the solutions (sphinx-exercise ``solution``, gated
  ``solution-start``/``solution-end`` or not) from these notebooks and from the
  downloadable sources (``_sources/**/*.md``, ``_sources/**/*.ipynb``), since the
  student edition hides them on the pages (``hide_solutions``) but the download
  buttons would still hand them out.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = "_notebooks"

SETUP_SOURCE = """\
# Setup, only needed where the course is not installed (Colab, a fresh Jupyter):
# installs the course's `companion` package and the packages it needs besides those
# Colab ships (torch, numpy, matplotlib, scikit-learn, scipy, tqdm, ipywidgets).
# Does nothing after `make install`.
import importlib.util

if importlib.util.find_spec("companion") is None:
    %pip install --quiet einops myst-nb
    %pip install --quiet --no-deps "companion @ git+{url}@{branch}"
"""

_FENCE = r"^\s*(?P<fence>`{3,}|:{3,})"
START = re.compile(_FENCE + r"\{solution-start\}")
END = re.compile(_FENCE + r"\{solution-end\}")
WHOLE = re.compile(_FENCE + r"\{solution\}")
BARE_FENCE = re.compile(r"^\s*(`{3,}|:{3,})\s*$")


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config.get("repository", {})
    return repo.get("url", ""), repo.get("branch", "main")


def setup_cell() -> nbformat.NotebookNode:
    url, branch = repository()
    cell = nbformat.v4.new_code_cell(SETUP_SOURCE.format(url=url, branch=branch))
    cell.metadata["tags"] = ["course-setup"]
    return cell


class SolutionStripper:
    """Drops the lines of solution blocks from a stream of cells (blocks may span cells)."""

    def __init__(self) -> None:
        self.mode: str | None = None        # None, "gated", "closing" or "whole"
        self.fence = ""

    def lines(self, text: str) -> list[str]:
        kept = []
        for line in text.splitlines(keepends=True):
            if self.mode is None:
                if m := START.match(line):
                    self.mode, self.fence = "gated", m["fence"]
                elif m := WHOLE.match(line):
                    self.mode, self.fence = "whole", m["fence"]
                else:
                    kept.append(line)
            elif self.mode == "gated":
                if END.match(line):
                    self.mode = "closing"
            elif self.mode == "closing":
                if BARE_FENCE.match(line):
                    self.mode = None
            elif self.mode == "whole" and line.strip() == self.fence:
                self.mode = None
        return kept

    @property
    def inside(self) -> bool:
        return self.mode is not None


def strip_solutions_text(text: str) -> str:
    return "".join(SolutionStripper().lines(text))


def strip_solutions_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    stripper, cells = SolutionStripper(), []
    for cell in nb.cells:
        if cell.cell_type == "code":
            if not stripper.inside:
                cells.append(cell)
            continue
        text = "".join(stripper.lines(cell.source))
        if text.strip():
            cell.source = text
            cells.append(cell)
    nb.cells = cells
    return nb


def write_notebooks(site: Path, executed: Path, student: bool) -> list[Path]:
    written = []
    for source in sorted(executed.rglob("*.ipynb")):
        nb = nbformat.read(source, as_version=4)
        if student:
            strip_solutions_notebook(nb)
        nb.cells.insert(0, setup_cell())
        target = site / NOTEBOOKS_DIR / source.relative_to(executed)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    return written


def strip_sources(site: Path) -> list[Path]:
    stripped = []
    for path in sorted((site / "_sources").rglob("*")):
        if path.suffix == ".md":
            text = path.read_text(encoding="utf-8")
            new = strip_solutions_text(text)
        elif path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            new = nbformat.writes(strip_solutions_notebook(nb))
            text = path.read_text(encoding="utf-8")
        else:
            continue
        if new != text:
            path.write_text(new, encoding="utf-8")
            stripped.append(path)
    return stripped


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    student = "--student" in sys.argv[1:]
    site = Path(args[0] if args else "_build/html")
    executed = site.parent / "jupyter_execute"
    written = write_notebooks(site, executed, student)
    print(f"notebooks: wrote {len(written)} notebook(s) to {site / NOTEBOOKS_DIR}")
    if student:
        print(f"notebooks: removed solutions from {len(strip_sources(site))} downloadable source(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
