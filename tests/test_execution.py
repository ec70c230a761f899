"""The parallel build: tools/execute.py, tools/cpu_report.py, the parallel-safe Sphinx setup.

Fast unit tests, in ``make test``; one executes a two-cell notebook in a real kernel
(a few seconds).
"""
from __future__ import annotations

import importlib.util
import io
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sys.path.insert(0, str(ROOT))
from conftest import toc_notebooks  # noqa: E402  (the repository's root conftest.py)

cpu_report = load_tool("cpu_report")
execute = load_tool("execute")
course_site = load_tool("course_site")

CHAPTER = """\
---
jupytext:
  text_representation: {extension: .md, format_name: myst}
kernelspec: {display_name: Python 3, language: python, name: python3}
---

# A chapter

Some prose.

```{code-cell} ipython3
x = 21
```

More prose.

```{code-cell} ipython3
import time
start = time.process_time()
while time.process_time() - start < 0.6:
    pass
2 * x
```
"""


def chapter(name: str, cpu: float, cells=()) -> dict:
    return {"chapter": name, "cpu_s": cpu, "wall_s": cpu * 1.5, "load": [1.0, 1.0, 1.0],
            "executed": True, "cells": list(cells)}


def test_longest_first_puts_unmeasured_chapters_first_then_decreasing_cpu():
    paths = [ROOT / "book" / f"{n}.md" for n in ["a", "b", "c", "d"]]
    previous = {"book/a.md": chapter("book/a.md", 10), "book/c.md": chapter("book/c.md", 70),
                "book/d.md": chapter("book/d.md", 40)}
    order = cpu_report.longest_first(paths, previous)
    assert [p.stem for p in order] == ["b", "c", "d", "a"]
    assert cpu_report.longest_first(paths, {}) == paths


def test_the_check_names_each_chapter_over_the_budget_and_its_heaviest_cells():
    cells = [{"index": i, "line": 10 * i, "source": f"step_{i}()", "cpu_s": s, "wall_s": s}
             for i, s in enumerate([1.0, 50.5, 3.0, 20.25, 0.5])]
    report = {"chapters": [chapter("book/heavy.md", 80.0, cells), chapter("book/light.md", 75.0)]}
    problems = cpu_report.over_budget(report, limit=75)
    assert len(problems) == 1                       # exactly at the limit is within it
    lines = problems[0].splitlines()
    assert "book/heavy.md: 80.0 CPU s" in lines[0]
    assert "50.5 CPU s" in lines[1] and "book/heavy.md:10" in lines[1] and "step_1()" in lines[1]
    assert "20.2 CPU s" in lines[2] and "step_3()" in lines[2]


def test_check_fails_on_a_missing_chapter_and_passes_a_complete_report(tmp_path, capsys):
    chapters = toc_notebooks()
    path = tmp_path / "execution_report.json"
    measured = [(p, chapter(cpu_report.chapter_key(p), 10.0)) for p in chapters]
    cpu_report.write_report(path, measured[1:], jobs=2, wall_s=50.0, load=((1, 1, 1), (2, 2, 2)))
    assert cpu_report.main([str(path)]) == 1
    assert f"{cpu_report.chapter_key(chapters[0])}: not in the report" in capsys.readouterr().err
    cpu_report.write_report(path, measured, jobs=2, wall_s=50.0, load=((1, 1, 1), (2, 2, 2)))
    assert cpu_report.main([str(path)]) == 0
    assert cpu_report.main([str(path), "--limit", "5"]) == 1
    assert cpu_report.main([str(path), "--limit", "5", "--warn-only"]) == 0
    assert json.loads(path.read_text())["chapters"][0]["chapter"].startswith("book/")


def test_a_run_on_some_chapters_keeps_the_others_in_the_report(tmp_path):
    chapters = toc_notebooks()
    path = tmp_path / "execution_report.json"
    measured = [(p, chapter(cpu_report.chapter_key(p), 10.0)) for p in chapters]
    earlier = [{**m, "executed": False} for _, m in measured[1:]]
    cpu_report.write_report(path, measured[:1], jobs=2, wall_s=5.0, load=((1, 1, 1), (1, 1, 1)), earlier=earlier)
    assert sorted(cpu_report.chapters_by_key(path)) == sorted(cpu_report.chapter_key(p) for p in chapters)
    assert cpu_report.main([str(path)]) == 0


def test_table_rows_and_the_docutils_table_of_the_status_page():
    cells = [{"index": 3, "line": 42, "source": "fit()", "cpu_s": 9.0, "wall_s": 12.0}]
    report = {"chapters": [chapter("book/vae.md", 30.0, cells),
                           {**chapter("book/gan.md", 20.0), "executed": False,
                            "measured": "2026-01-02T03:04:05+00:00"}]}
    rows = cpu_report.table_rows(report)
    assert rows[0] == ["book/vae.md", "30.0", "45.0", "9.0 (line 42)", "1.00", "this build"]
    assert rows[1][-1] == "cache (2026-01-02)"
    table = course_site._text_table(cpu_report.TABLE_HEADER, rows)
    assert len(list(table.findall(lambda n: n.tagname == "row"))) == 3
    assert "9.0 (line 42)" in table.astext()


def _sphinx_read(path: Path):
    """The chapter as the site build reads it: myst-nb's reader with the book's MyST settings."""
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.read import create_nb_reader
    from myst_parser.config.main import MdParserConfig

    parse = yaml.safe_load((ROOT / "_config.yml").read_text())["parse"]
    md_config = replace(MdParserConfig(), enable_extensions=set(parse["myst_enable_extensions"]),
                        dmath_double_inline=parse.get("myst_dmath_double_inline", False))
    text = path.read_text(encoding="utf-8")
    return create_nb_reader(str(path), md_config, NbParserConfig(), text).read(text)


def test_every_chapter_is_cached_under_the_key_the_site_build_looks_up(tmp_path):
    from jupyter_cache import get_cache
    cache = get_cache(str(tmp_path / "cache"))
    for path in toc_notebooks():
        ours = cache.create_hashed_notebook(execute.read_chapter(path))[1]
        assert ours == cache.create_hashed_notebook(_sphinx_read(path))[1], path


def test_a_chapter_is_executed_measured_and_found_by_myst_nb_in_the_cache(tmp_path):
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn
    import nbformat

    path = tmp_path / "chapter.md"
    path.write_text(CHAPTER)
    out = execute.execute_chapter(str(path), timeout=60, allow_errors=False)
    assert out["error"] is None
    m = out["measurement"]
    heavy, light = sorted(m["cells"], key=lambda c: -c["cpu_s"])
    assert heavy["source"] == "import time" and CHAPTER.splitlines()[heavy["line"] - 1] == "import time"
    assert 0.55 <= heavy["cpu_s"] <= m["cpu_s"] and light["cpu_s"] < 0.3
    assert m["cpu_s"] == pytest.approx(m["cpu_user_s"] + m["cpu_system_s"], abs=0.02)
    assert m["wall_s"] >= heavy["wall_s"] >= 0.55

    cache = get_cache(str(tmp_path / ".jupyter_cache"))
    nb = nbformat.reads(out["notebook"], as_version=nbformat.NO_CONVERT)
    cache.cache_notebook_bundle(CacheBundleIn(nb, str(path), data=m), check_validity=False)
    assert execute.cached_measurement(cache, path)["cpu_s"] == m["cpu_s"]
    assert cpu_report.unmeasured_in_cache(tmp_path / ".jupyter_cache") == []

    # What the site build does with it: myst-nb in cache mode, as course_site sets it up.
    from myst_nb.core.config import NbParserConfig
    from myst_nb.core.execute import create_client
    course_site.write_cached_outputs_too()
    notebook = _sphinx_read(path)
    config = NbParserConfig(execution_mode="cache", execution_cache_path=str(tmp_path / ".jupyter_cache"))
    with create_client(notebook, str(path), config, logging.getLogger("test")) as client:
        assert client.exec_metadata["runtime"] == m["execution_seconds"] and client.notebook is notebook
    code = [c for c in notebook.cells if c.cell_type == "code"]    # the notebook myst-nb writes
    assert code[1].outputs[0]["data"]["text/plain"] == "42" and code[1].execution_count == 2
    assert len(list(cache.list_cache_records())) == 1              # myst-nb executed nothing


@pytest.mark.filterwarnings("ignore::FutureWarning")   # torch.distributed, seen by Sphinx's import walk
def test_every_sphinx_extension_of_the_build_is_declared_parallel_safe(tmp_path, monkeypatch):
    from jupyter_book.config import get_final_config
    from sphinx.application import Sphinx

    # What `jupyter-book build .` hands Sphinx.
    config, _ = get_final_config(user_yaml=ROOT / "_config.yml", sourcedir=ROOT,
                                 cli_config={"external_toc_path": "_toc.yml",
                                             "latex_individualpages": False})
    monkeypatch.syspath_prepend(str(ROOT / "tools"))           # local_extensions: course_site
    warnings = io.StringIO()
    app = Sphinx(srcdir=ROOT, confdir=None, outdir=tmp_path / "html", doctreedir=tmp_path / "doctrees",
                 buildername="html", confoverrides=config, status=None, warning=warnings, parallel=2)
    undeclared = {name: (ext.parallel_read_safe, ext.parallel_write_safe)
                  for name, ext in app.extensions.items()
                  if not (ext.parallel_read_safe and ext.parallel_write_safe)}
    assert undeclared == {}
    assert app.is_parallel_allowed("read") and app.is_parallel_allowed("write")
    assert "parallel" not in warnings.getvalue()
    assert {"course_site", "myst_nb", "sphinx_multitoc_numbering"} <= set(app.extensions)
