"""The build helpers in tools/: notebooks for Colab, the student edition, the Sphinx hooks.

Fast unit tests (no site needed); they run in ``make test``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"course_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


notebooks = load_tool("notebooks")
course_site = load_tool("course_site")

CHAPTER = """\
Intro text.

````{exercise}
:label: x-ex-1
Compute it.
````

```{solution-start} x-ex-1
:class: dropdown
```

The answer is 42.

```{solution-end}
```

Between exercises.

```{solution} x-ex-2
:class: dropdown
Plain solution text.
```

After.
"""


def test_strip_solutions_text_keeps_exercises_and_drops_both_kinds_of_solution():
    out = notebooks.strip_solutions_text(CHAPTER)
    assert "Compute it." in out and "Between exercises." in out and out.rstrip().endswith("After.")
    assert "42" not in out and "Plain solution" not in out and "solution" not in out


def test_strip_solutions_notebook_drops_code_cells_inside_a_gated_solution():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Text.\n\n```{solution-start} x-ex-1\n:class: dropdown\n```\n\nWhy:"),
        nbformat.v4.new_code_cell("secret = 42"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```\n\nNext section."),
        nbformat.v4.new_code_cell("visible = 1"),
    ])
    out = notebooks.strip_solutions_notebook(nb)
    sources = [c.source for c in out.cells]
    assert sources == ["Text.\n\n", "\nNext section.", "visible = 1"]


COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_setup_cell_installs_companion_at_the_build_commit_only_where_it_is_missing():
    cell = notebooks.setup_cell(COMMIT)
    assert cell.cell_type == "code" and "course-setup" in cell.metadata["tags"]
    assert 'find_spec("companion") is None' in cell.source
    assert f'"companion @ git+https://github.com/genai-cpu-course/course@{COMMIT}"' in cell.source
    assert "@main" not in cell.source and "myst-nb" not in cell.source
    # Colab keeps its PyTorch (--no-deps); a bare Jupyter gets the pinned versions.
    assert '%pip install --quiet --no-deps einops "{COMPANION}"' in cell.source


def test_setup_cell_is_valid_ipython():
    from IPython.core.inputtransformer2 import TransformerManager
    python = TransformerManager().transform_cell(notebooks.setup_cell(COMMIT).source)
    compile(python, "setup", "exec")
    assert "get_ipython().run_line_magic('pip'" in python


def test_the_glue_import_gets_a_fallback_without_myst_nb():
    cell = nbformat.v4.new_code_cell("import torch\nfrom myst_nb import glue\n\nglue('x', 1, display=False)")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "1"},
                                           metadata={"scrapbook": {"name": "x"}}),
                    nbformat.v4.new_output("stream", text="kept\n")]
    notebooks.reader_code(cell)
    assert [o.output_type for o in cell.outputs] == ["stream"]
    shown = []
    namespace = {"__builtins__": __builtins__}
    exec(cell.source.replace("from myst_nb import glue", "from myst_nb_missing import glue")
         .replace("import torch", "pass"), namespace)
    namespace["_display"] = shown.append
    namespace["glue"]("y", 2)
    namespace["glue"]("z", 3, display=False)
    assert shown == [2]


def test_write_notebooks_puts_the_setup_cell_first_and_fills_the_download(tmp_path):
    executed = tmp_path / "jupyter_execute" / "book"
    executed.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), executed / "ch.ipynb")
    site = tmp_path / "html"

    class Data:
        def page(self, docname):
            return None             # no markdown cell: nothing to resolve

    written = notebooks.write_notebooks(site, tmp_path / "jupyter_execute", student=False,
                                        commit=COMMIT, data=Data())
    assert written == [site / "_notebooks" / "book" / "ch.ipynb"]
    cells = nbformat.read(written[0], as_version=4).cells
    assert "course-setup" in cells[0].metadata["tags"] and cells[1].source == "x = 1"
    assert (site / "_sources" / "book" / "ch.ipynb").read_bytes() == written[0].read_bytes()


def test_colab_url_opens_the_published_notebook():
    url = course_site.colab_notebook_url("https://colab.research.google.com/", "org", "repo", "gh-pages", "book/ch")
    assert url == "https://colab.research.google.com/github/org/repo/blob/gh-pages/_notebooks/book/ch.ipynb"


def test_fix_scripts_drops_a_script_registered_twice_and_configures_requirejs():
    from sphinx.builders.html._assets import _JavaScript
    context = {
        "pathto": lambda name, resource=0: "../" + name,
        "script_files": [
            _JavaScript(None, body="const A = 1"), _JavaScript("", body="const A = 1", priority=500),
            _JavaScript("x.js"), _JavaScript("../_vendor/requirejs/require.js"),
        ],
    }
    course_site.fix_scripts(None, "book/ch", "page.html", context, None)
    bodies = [s.attributes.get("body", "") for s in context["script_files"]]
    assert bodies.count("const A = 1") == 1
    config = context["script_files"][-2]
    assert '"@jupyter-widgets": "../_vendor/html-manager"' in config.attributes["body"]
    assert str(context["script_files"][-1].filename).endswith("require.js")
