"""The chapters of the book: the files ``_toc.yml`` names, and which of them are notebooks.

One reading of the table of contents for every tool that walks the chapters: the
root ``conftest.py`` (nbval runs each notebook), ``tools/execute.py`` (the build
executes each notebook) and the tests that check both cover the whole toc.
"""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOC = ROOT / "_toc.yml"


def toc_entries(toc: Path = TOC) -> list[Path]:
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


def toc_notebooks(toc: Path = TOC) -> list[Path]:
    """The notebooks (chapters with code) among the toc's files, in toc order."""
    return [p for p in toc_entries(toc) if p.is_file() and is_notebook(p)]
