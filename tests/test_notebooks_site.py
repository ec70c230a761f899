"""The built notebooks (Colab button and download button) read right outside the site.

After ``make book`` (and ``make student``, if that edition was built): every notebook
under ``_notebooks/`` renders as plain CommonMark with no MyST left, no empty code
block, the page's equation numbers and only numbers the page shows
(``tools/notebook_check.py``); the download button's ``.ipynb`` is the same notebook;
its setup cell installs ``companion`` at a commit of this repository, not a branch.
Run by ``make site-test``.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import notebook_check  # noqa: E402  (tools/notebook_check.py)
from conftest import toc_notebooks  # noqa: E402  (the repository's root conftest.py)

pytestmark = pytest.mark.site
EDITIONS = {"full": ROOT / "_build" / "html", "student": ROOT / "_build" / "student" / "_build" / "html"}
PINNED = re.compile(r'"companion @ git\+https://\S+@(?P<commit>[0-9a-f]{40})"')


def site(edition: str) -> Path:
    path = EDITIONS[edition]
    if not (path / "index.html").exists():
        if edition == "full":
            pytest.fail(f"no site in {path}: run `make book` first")
        pytest.skip(f"no {edition} edition in {path} (make student)")
    return path


def docnames() -> list[str]:
    return [p.relative_to(ROOT).with_suffix("").as_posix() for p in toc_notebooks()]


@pytest.mark.parametrize("edition", EDITIONS)
def test_no_notebook_has_myst_left_and_its_numbers_are_the_pages(edition):
    found = notebook_check.check_site(site(edition), student=edition == "student")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("edition", EDITIONS)
def test_every_chapter_has_one_notebook_for_colab_and_download(edition):
    root = site(edition)
    for name in docnames():
        colab = root / "_notebooks" / f"{name}.ipynb"
        download = root / "_sources" / f"{name}.ipynb"
        assert colab.exists(), f"{name}: no notebook for the Colab button"
        assert download.read_bytes() == colab.read_bytes(), f"{name}: the download differs from Colab's"


@pytest.mark.parametrize("edition", EDITIONS)
def test_the_setup_cell_installs_a_commit_of_this_repository(edition):
    root = site(edition)
    commits = set()
    for name in docnames():
        nb = nbformat.read(root / "_notebooks" / f"{name}.ipynb", as_version=4)
        assert "course-setup" in nb.cells[0].metadata.get("tags", []), f"{name}: setup cell not first"
        m = PINNED.search(nb.cells[0].source)
        assert m, f"{name}: the setup cell does not pin a commit:\n{nb.cells[0].source}"
        commits.add(m["commit"])
    assert len(commits) == 1, f"notebooks of one build pin different commits: {commits}"
    known = subprocess.run(["git", "cat-file", "-e", f"{commits.pop()}^{{commit}}"], cwd=ROOT)
    assert known.returncode == 0, "the pinned commit is not in this repository"


def test_solutions_are_folded_in_the_full_edition_and_absent_from_the_students():
    full = (site("full") / "_notebooks" / "book")
    texts = {p.stem: p.read_text(encoding="utf-8") for p in full.glob("*.ipynb")}
    assert any("<summary>Solution to Exercise" in t for t in texts.values())
    if (EDITIONS["student"] / "index.html").exists():
        for path in (EDITIONS["student"] / "_notebooks" / "book").glob("*.ipynb"):
            assert "Solution to Exercise" not in path.read_text(encoding="utf-8"), path.name
