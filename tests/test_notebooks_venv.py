"""The download path: a chapter's notebook runs where only the course's wheel is installed.

A reader who downloads a chapter's notebook (or opens it in Colab) has none of the
book's build packages: no myst-nb, Sphinx, jupytext or pytest. This test builds the
wheel of ``companion``, installs it with a kernel (``ipykernel``) and nothing else into
a fresh virtual environment - from the configured pip indexes, at the versions in
``constraints.txt`` - and executes the shortest chapter there, in an empty folder, as
the build writes it for readers (``tools/notebooks.py``: its setup cell first, the
glue fallback). The setup cell must find ``companion`` and do nothing; every cell,
the hidden checks included, must pass.

Slow (a virtual environment with PyTorch, then one chapter): ``make test`` runs it; the
unit suite (``-m "not notebooks and not site"``) does not.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))

import notebooks  # noqa: E402  (tools/notebooks.py)
from conftest import toc_notebooks  # noqa: E402  (the repository's root conftest.py)

pytestmark = [pytest.mark.slow, pytest.mark.notebooks]
BUILD_ONLY = ["myst_nb", "sphinx", "jupytext", "jupyter_book", "pytest", "nbval"]


def shortest_chapter() -> Path:
    return min(toc_notebooks(), key=lambda p: len(p.read_text(encoding="utf-8")))


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def companion_wheel(where: Path) -> Path:
    """The wheel of the working tree's companion, built from a copy (no build/ left behind)."""
    source = where / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "companion", source / "companion",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(where / "dist"), str(source))
    return next((where / "dist").glob("companion-*.whl"))


@pytest.fixture(scope="module")
def reader_venv(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh venv with the companion wheel and ipykernel only, and its kernel's environment."""
    where = tmp_path_factory.mktemp("reader")
    wheel = companion_wheel(where)
    venv = where / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    python = venv / "bin" / "python"
    run(str(python), "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt"),
        str(wheel), "ipykernel")
    run(str(python), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", "reader")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return venv, env


def test_the_reader_venv_has_no_build_packages(reader_venv):
    venv, env = reader_venv
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % BUILD_ONLY
    found = run(str(venv / "bin" / "python"), "-c", probe, env=env, cwd=venv).stdout.strip()
    assert found == "[]", f"build packages in the reader's venv: {found}"


def test_the_shortest_chapter_runs_from_its_reader_notebook(reader_venv, tmp_path):
    venv, env = reader_venv
    chapter = shortest_chapter()
    nb = jupytext.read(chapter)
    for cell in nb.cells:
        if cell.cell_type == "code":
            notebooks.reader_code(cell)
    nb.cells.insert(0, notebooks.setup_cell(notebooks.build_commit()))
    assert any("except ImportError" in c.source for c in nb.cells), "no glue fallback in the notebook"

    specs = KernelSpecManager(kernel_dirs=[str(venv / "share" / "jupyter" / "kernels")])
    manager = KernelManager(kernel_name="reader", kernel_spec_manager=specs)
    client = NotebookClient(nb, km=manager, timeout=600, kernel_name="reader",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=env, cwd=str(tmp_path))        # raises CellExecutionError on any failure
    setup = nb.cells[0]
    assert not setup.outputs, f"the setup cell did something where companion is installed: {setup.outputs}"
    imported = run(str(venv / "bin" / "python"), "-c", "import companion; print(companion.__file__)",
                   env=env, cwd=tmp_path).stdout
    assert str(venv) in imported, f"companion came from {imported}, not the reader's venv"
    nbformat.validate(nb)
