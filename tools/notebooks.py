"""Notebooks the site offers for running a chapter elsewhere, and the student edition.

Usage: ``python tools/notebooks.py _build/html [--student]`` (``make book`` and
``make student`` run it after the Sphinx build).

* Writes ``_notebooks/<page>.ipynb`` into the site for every executed chapter in
  ``_build/jupyter_execute``, and puts the same notebook where the page's download
  button points (``_sources/<page>.ipynb``): the executed notebook (outputs included, so
  a reader sees the figures before running anything) with its markdown in plain
  Jupyter Markdown - glued numbers, citations, equation numbers, included code,
  exercises and cross-references resolved as the page shows them
  (``tools/myst_plain.py``, with the build's data from ``tools/site_data.py``), since
  Colab, classic Jupyter and VS Code do not render MyST. The Colab button of each page
  opens this file from the published branch (``tools/course_site.py``).
* Its first cell installs the course's ``companion`` package at the commit the site was
  built from (``git rev-parse HEAD``, or ``$COURSE_COMMIT``) where it is missing - on
  Colab, or in a Jupyter without the course - and does nothing where it is installed.
  ``from myst_nb import glue`` becomes a fallback that needs no myst-nb: the numbers it
  collects for the build are already in the text.
* Then checks every notebook it wrote (``tools/notebook_check.py``: no MyST left, no empty
  code block, the page's numbers) and exits 1 on any problem, failing the build.
* ``--student``: removes the solutions (sphinx-exercise ``solution``, gated
  ``solution-start``/``solution-end`` or not) from these notebooks and from the
  downloadable sources (``_sources/**/*.md``, ``_sources/**/*.ipynb``), since the
  student edition hides them on the pages (``hide_solutions``) but the download
  buttons would still hand them out.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import myst_plain  # noqa: E402  (a sibling module of this script)
import notebook_check  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = "_notebooks"

SETUP_SOURCE = """\
# Setup, only where the course is not installed (Colab, a fresh Jupyter): installs the
# course's `companion` package as it was when this notebook was built (commit {short}).
# Colab keeps its own PyTorch, NumPy, matplotlib, scikit-learn, SciPy, tqdm and
# ipywidgets; elsewhere pip installs the versions the course pins (on Linux the CPU-only
# build of PyTorch). Does nothing where `companion` can be imported (`make install`).
import importlib.util
import sys

if importlib.util.find_spec("companion") is None:
    COMPANION = "companion @ git+{url}@{commit}"
    if importlib.util.find_spec("torch") is not None:
        %pip install --quiet --no-deps einops "{{COMPANION}}"
    elif sys.platform == "linux":
        %pip install --quiet "{{COMPANION}}" --extra-index-url https://download.pytorch.org/whl/cpu
    else:
        %pip install --quiet "{{COMPANION}}"
"""

GLUE_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from myst_nb import glue[ \t]*$", re.M)
GLUE_FALLBACK = """\
{indent}try:
{indent}    from myst_nb import glue
{indent}except ImportError:  # only the book's build collects glued numbers; the text has them
{indent}    from IPython.display import display as _display
{indent}
{indent}    def glue(name, variable, display=True):
{indent}        if display:
{indent}            _display(variable)"""


def repository() -> tuple[str, str]:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config.get("repository", {})
    return repo.get("url", ""), repo.get("branch", "main")


def site_url() -> str:
    """Where the site is published: ``html.baseurl``, else GitHub Pages of the repository."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    base = (config.get("html") or {}).get("baseurl") or ""
    if base:
        return base.rstrip("/") + "/"
    url, _ = repository()
    m = re.match(r"https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$", url)
    return f"https://{m[1]}.github.io/{m[2]}/" if m else ""


def source_url(commit: str | None = None) -> str:
    """The repository's files at the commit the site is built from (for included code)."""
    url, _ = repository()
    return f"{url.rstrip('/')}/blob/{commit or build_commit()}/"


def build_commit() -> str:
    """The commit the site is built from: $COURSE_COMMIT, else ``git rev-parse HEAD``."""
    if os.environ.get("COURSE_COMMIT"):
        return os.environ["COURSE_COMMIT"]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit("notebooks: not a git checkout; set COURSE_COMMIT to the commit "
                         "the notebooks' setup cell should install") from exc
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "companion"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        print(f"notebooks: warning: companion/ has uncommitted changes; the setup cell "
              f"installs commit {head[:12]} without them", file=sys.stderr)
    return head


def setup_cell(commit: str) -> nbformat.NotebookNode:
    url, _ = repository()
    cell = nbformat.v4.new_code_cell(SETUP_SOURCE.format(url=url, commit=commit, short=commit[:12]))
    cell.metadata["tags"] = ["course-setup"]
    return cell


_FENCE = r"^\s*(?P<fence>`{3,}|:{3,})"
START = re.compile(_FENCE + r"\{solution-start\}")
END = re.compile(_FENCE + r"\{solution-end\}")
WHOLE = re.compile(_FENCE + r"\{solution\}")
BARE_FENCE = re.compile(r"^\s*(`{3,}|:{3,})\s*$")


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


def reader_code(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A code cell that runs without the book's build packages, without the glue outputs."""
    cell.source = GLUE_IMPORT.sub(lambda m: GLUE_FALLBACK.format(indent=m["indent"]), cell.source)
    cell.outputs = [o for o in cell.get("outputs", []) if "scrapbook" not in o.get("metadata", {})]
    return cell


def reader_notebook(nb: nbformat.NotebookNode, page, commit: str, student: bool) -> nbformat.NotebookNode:
    """The executed chapter as a reader gets it: plain Markdown, setup cell, no solutions (student)."""
    if student:
        strip_solutions_notebook(nb)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = myst_plain.convert(cell.source, page)
        elif cell.cell_type == "code":
            reader_code(cell)
    myst_plain.fold_solutions(nb.cells, lambda label: page.exercise(label)[0])
    nb.cells.insert(0, setup_cell(commit))
    nb.metadata.pop("jupytext", None)         # not paired with a text file any more
    return nb


def write_notebooks(site: Path, executed: Path, student: bool, commit: str | None = None,
                    data=None) -> list[Path]:
    """Write the readers' notebooks to site/_notebooks/ and to the download button's target.

    ``data``: what the site shows (``site_data.SiteData``, read from the build by default).
    """
    commit = commit or build_commit()
    if data is None:
        from site_data import SiteData  # the build's packages: Sphinx, myst-nb, sphinxcontrib-bibtex
        data = SiteData(site.parent / ".doctrees", executed, site_url(), source_url(commit), ROOT)
    written = []
    for source in sorted(executed.rglob("*.ipynb")):
        docname = source.relative_to(executed).with_suffix("").as_posix()
        nb = reader_notebook(nbformat.read(source, as_version=4), data.page(docname), commit, student)
        # The Colab button's notebook, and the page's download button's .ipynb.
        for target in (site / NOTEBOOKS_DIR / f"{docname}.ipynb", site / "_sources" / f"{docname}.ipynb"):
            target.parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, target)
        written.append(site / NOTEBOOKS_DIR / f"{docname}.ipynb")
    return written


def strip_sources(site: Path) -> list[Path]:
    stripped = []
    for path in sorted((site / "_sources").rglob("*")):
        if path.suffix == ".md":
            text = path.read_text(encoding="utf-8")
            new = strip_solutions_text(text)
        elif path.suffix == ".ipynb":       # compared as written by nbformat, as write_notebooks does
            text = nbformat.writes(nbformat.read(path, as_version=4))
            new = nbformat.writes(strip_solutions_notebook(nbformat.read(path, as_version=4)))
        else:
            continue
        if new != text:
            if path.suffix == ".ipynb":
                nbformat.write(nbformat.reads(new, as_version=4), path)
            else:
                path.write_text(new, encoding="utf-8")
            stripped.append(path)
    return stripped


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    student = "--student" in sys.argv[1:]
    site = Path(args[0] if args else "_build/html")
    executed = site.parent / "jupyter_execute"
    written = write_notebooks(site, executed, student)
    print(f"notebooks: wrote {len(written)} notebook(s) to {site / NOTEBOOKS_DIR} and {site / '_sources'}")
    if student:
        print(f"notebooks: removed solutions from {len(strip_sources(site))} downloadable source(s)")
    found = notebook_check.check_site(site, student)
    for line in found:
        print(f"notebooks: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    raise SystemExit(main())
