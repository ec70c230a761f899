"""Run the chapters listed in ``_toc.yml`` under nbval, straight from their MyST sources.

nbval collects ``.ipynb`` files only; the chapters are MyST Markdown notebooks
(jupytext). This hook hands nbval each ``.md`` chapter named in ``_toc.yml``,
read with jupytext, so the kernel runs in the chapter's own folder and no
converted copy can go stale. Use: ``pytest book --nbval-lax --nbval-current-env``.
"""
from __future__ import annotations

from pathlib import Path

import jupytext
import nbval.plugin
import pytest
import yaml

ROOT = Path(__file__).resolve().parent


def toc_entries(toc: Path = ROOT / "_toc.yml") -> list[Path]:
    """Every file named in ``_toc.yml`` (root and chapters), resolved next to the toc file."""
    data = yaml.safe_load(toc.read_text())
    names = [data["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(data.get("parts", data.get("chapters", [])))
    paths = []
    for name in names:
        base = toc.parent
        candidates = [base / name, base / f"{name}.md", base / f"{name}.ipynb"]
        paths.append(next((c for c in candidates if c.is_file()), base / f"{name}.md"))
    return paths


def is_notebook(path: Path) -> bool:
    """A MyST file is a notebook when its front matter has a jupytext kernelspec."""
    head = path.read_text(encoding="utf-8")[:1000]
    return path.suffix == ".ipynb" or (head.startswith("---") and "kernelspec:" in head)


def toc_notebooks() -> list[Path]:
    return [p for p in toc_entries() if p.is_file() and is_notebook(p)]


class _JupytextReader:
    """Stands in for the ``nbformat`` module inside nbval while it reads one chapter."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, *_args: object, **_kwargs: object):
        return jupytext.read(self.path)


class MarkdownNotebook(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, reading a MyST Markdown notebook through jupytext."""

    def collect(self):
        original = nbval.plugin.nbformat
        nbval.plugin.nbformat = _JupytextReader(self.path)
        try:
            items = list(super().collect())
        finally:
            nbval.plugin.nbformat = original
        return items


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    opt = parent.config.option
    if not (opt.nbval or opt.nbval_lax) or file_path.suffix != ".md":
        return None
    if file_path.resolve() in {p.resolve() for p in toc_notebooks()}:
        return MarkdownNotebook.from_parent(parent, path=file_path)
    return None
