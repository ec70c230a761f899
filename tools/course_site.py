"""Sphinx extension for the course site (Jupyter Book 1.x, ``sphinx.local_extensions``).

On every page that is a notebook (a chapter), it

* adds a "slides" button to the page header that opens the chapter's reveal.js deck,
  ``slides/<page>.html`` (built after the site by ``tools/slides.py``, which builds a
  deck for exactly the pages that carry this button);
* points the Colab launch button at a notebook that Colab can open. The theme links
  the ``.md`` source, which Colab cannot read; ``tools/notebooks.py`` writes a
  Colab-ready ``.ipynb`` to ``_notebooks/<page>.ipynb`` in the site, and the Pages
  workflow publishes the site to the branch ``course_notebooks_branch``, so Colab
  opens ``github/<org>/<repo>/blob/<branch>/_notebooks/<page>.ipynb``.

On every page it adds a header button to the whole book as one PDF, ``course.pdf`` (printed
after the build by ``tools/book_pdf.py``). It also removes a script that another extension registered twice
(sphinx-thebe's inline ``const THEBE_JS_URL = ...`` ends up twice in every page, and
the second copy throws "Identifier has already been declared"), and it sets the theme's
``default_mode`` (an ``html_context`` value) to ``light`` (left empty, pydata-sphinx-theme logs "Got invalid theme
mode" as a console error on a reader's first visit; the figures are drawn for a light
background). The browser test (tests/test_site_browser.py) fails on either error.

It adds ``course_static/course_a11y.js`` and ``.css`` to every page: fixes for what the
accessibility audit (axe-core in ``make site-test``) finds in the theme's and the widget
manager's HTML: names of buttons and summaries that include their visible text, slider
handles named by their label, an alt text for a figure a widget draws (from the static
figure of its cell), no ``role=list`` on reference lists whose entries hold backlinks, and
links in admonitions dark enough for their tinted background.

The directive ``execution-cpu-table`` (on the execution status page) shows what each
chapter cost to execute in this build, from the report that ``tools/execute.py`` writes
beside myst-nb's jupyter-cache (``tools/cpu_report.py``): CPU and wall seconds, the
heaviest cell, the load average. And it makes myst-nb's cache mode write the executed
notebook (with its outputs) to ``jupyter_execute/`` as force mode does
(``write_cached_outputs_too``).

And, for the student edition (``make student``), removes every exercise solution from
the pages. (sphinx-exercise 1.2's own ``hide_solutions`` cannot do it for the gated
solutions the chapters use: it drops only the ``solution-start`` marker, which leaves
the solution's content in place and an orphan ``solution-end`` node that stops the
HTML build with "unknown node type".)

Configuration (``_config.yml``, ``sphinx: config:``):
``course_notebooks_branch`` (default ``"gh-pages"``; empty: leave the Colab button alone);
``course_student_edition`` (default ``False``).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import posixpath
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.builders.html._assets import _JavaScript
from sphinx.transforms import SphinxTransform
from sphinx.util.docutils import SphinxDirective
from sphinx_exercise.nodes import solution_node

SLIDES_DIR = "slides"
BOOK_PDF = "course.pdf"                  # tools/book_pdf.py (its PDF_NAME)
NOTEBOOKS_DIR = "_notebooks"
REQUIREJS = "_vendor/requirejs/require.js"
WIDGETS_DIR = "_vendor/html-manager"


def is_notebook(app: Sphinx, pagename: str, context: dict[str, Any]) -> bool:
    """The test sphinx-book-theme uses for its launch buttons: a kernelspec, or an .ipynb source."""
    metadata = app.env.metadata.get(pagename, {})
    return "kernelspec" in metadata or "ipynb" in context.get("page_source_suffix", "")


def slides_button(context: dict[str, Any], pagename: str) -> dict[str, str]:
    return {
        "type": "link",
        "url": context["pathto"](f"{SLIDES_DIR}/{pagename}.html", 1),
        "tooltip": "Present this chapter as slides",
        "icon": "fas fa-person-chalkboard",
        "label": "slides-button",
    }


def pdf_button(context: dict[str, Any]) -> dict[str, str]:
    """The whole book as one PDF (``tools/book_pdf.py`` prints it after the build)."""
    return {
        "type": "link",
        "url": context["pathto"](BOOK_PDF, 1),
        "tooltip": "The whole book as one PDF",
        "icon": "fas fa-file-pdf",
        "label": "pdf-button",
    }


def colab_notebook_url(colab_url: str, org: str, repo: str, branch: str, pagename: str) -> str:
    return f"{colab_url.rstrip('/')}/github/{org}/{repo}/blob/{branch}/{NOTEBOOKS_DIR}/{pagename}.ipynb"


def add_course_buttons(app: Sphinx, pagename: str, templatename: str,
                       context: dict[str, Any], doctree: Any) -> None:
    buttons = context.get("header_buttons")
    if buttons is None or doctree is None:
        return
    buttons.append(pdf_button(context))
    if not is_notebook(app, pagename, context):
        return
    buttons.insert(0, slides_button(context, pagename))

    branch = app.config.course_notebooks_branch
    colab_url = app.config.html_theme_options.get("launch_buttons", {}).get("colab_url", "")
    org, repo = context.get("github_user"), context.get("github_repo")
    if not (branch and colab_url and org and repo):
        return
    for group in buttons:
        for button in group.get("buttons", []):
            if button.get("text") == "Colab":
                button["url"] = colab_notebook_url(colab_url, org, repo, branch, pagename)


def fix_scripts(app: Sphinx, pagename: str, templatename: str,
                        context: dict[str, Any], doctree: Any) -> None:
    seen, unique = set(), []
    for script in context.get("script_files", []):
        # The same file or inline body (registered with filename None or ""), whatever
        # priority each registration gave it.
        key = (str(getattr(script, "filename", script) or ""),
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    # On a page with widgets (myst-nb adds require.js and the widget manager), tell
    # require.js where the manager's modules live: their fonts are fetched relative to
    # the modules' URLs, which otherwise point to <page folder>/@jupyter-widgets/.
    for i, script in enumerate(unique):
        if str(getattr(script, "filename", "")).endswith(REQUIREJS):
            root = context["pathto"]("", 1).rstrip("/") or "."
            where = f"{root}/{WIDGETS_DIR}"
            paths = {"@jupyter-widgets": where, "@jupyter-widgets/html-manager/dist": where}
            unique.insert(i, _JavaScript("", priority=script.priority,
                                         body=f"var require = {{paths: {json.dumps(paths)}}};"))
            break
    if "script_files" in context:
        context["script_files"][:] = unique


# The ipywidgets page script (@jupyter-widgets/base 6) typesets widget labels with
# MathJax 2's ``MathJax.Hub.Queue``; the site runs MathJax 3, which has no Hub, so every
# page with a widget threw "Cannot read properties of undefined (reading 'Queue')".
# This shim gives MathJax 3 that one entry point. It runs at DOMContentLoaded, after the
# deferred MathJax script has defined the real MathJax object and before the widget
# manager (registered later) renders anything.
MATHJAX2_HUB_SHIM = """
document.addEventListener("DOMContentLoaded", function () {
  var M = window.MathJax;
  if (M && !M.Hub) {
    M.Hub = {Queue: function (job) {
      if (M.typesetPromise && job && job[2]) { M.typesetPromise([job[2]]).catch(function () {}); }
    }};
  }
});
"""


def add_accessibility_fixes(app: Sphinx, config: Any) -> None:
    """course_static/course_a11y.{js,css}: what axe-core (make site-test) found in the theme."""
    config.html_static_path.append(str(Path(__file__).with_name("course_static")))


def light_by_default(app: Sphinx, config: Any) -> None:
    # pydata-sphinx-theme reads the default colour mode from html_context.
    config.html_context.setdefault("default_mode", "light")


class RemoveSolutions(SphinxTransform):
    """Student edition: drop the solution nodes, after sphinx-exercise merged the gated ones."""

    default_priority = 11       # sphinx-exercise's MergeGatedSolutions runs at 10

    def apply(self, **kwargs: Any) -> None:
        if not self.config.course_student_edition:
            return
        for node in list(self.document.findall(solution_node)):
            node.parent.remove(node)


def _sibling(name: str):
    """A module of tools/ (loaded by path: tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"course_tools_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cpu_report = _sibling("cpu_report")


def _text_table(header: list[str], rows: list[list[nodes.Node | str]]) -> nodes.table:
    table = nodes.table(classes=["colwidths-auto"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]

    def row(cells):
        out = nodes.row()
        for cell in cells:
            out += nodes.entry("", nodes.paragraph("", "", cell if isinstance(cell, nodes.Node)
                                                   else nodes.Text(cell)))
        return out

    group += nodes.thead("", row(header))
    group += nodes.tbody("", *[row(r) for r in rows])
    return table


class ExecutionCpuTable(SphinxDirective):
    """The chapters' CPU and wall seconds in this build (tools/execute.py's report)."""

    def run(self) -> list[nodes.Node]:
        cache = self.config.nb_execution_cache_path or Path(self.env.app.outdir).parent / ".jupyter_cache"
        path = cpu_report.report_path(Path(cache))
        self.env.note_dependency(str(path))         # re-read this page when the report changes
        report = cpu_report.load_report(path)
        if report is None:
            return [nodes.paragraph(text="This build did not measure the chapters "
                                         "(run tools/execute.py before the site build: make book).")]
        rows = []
        for row in cpu_report.table_rows(report):
            docname = posixpath.splitext(row[0])[0]
            link = pending_xref("", nodes.inline(text=docname), refdoc=self.env.docname,
                                reftarget="/" + docname, reftype="doc", refdomain="std",
                                refexplicit=True, refwarn=True, classes=["xref", "doc"])
            rows.append([link, *row[1:]])
        load = ", ".join(f"{x:.2f}" for x in report["load_before"])
        executed = sum(1 for c in report["chapters"] if c.get("executed"))
        summary = (f"This build executed {executed} of the {len(rows)} chapters, "
                   f"{report['jobs']} at a time on {report['cpus']} CPUs, in "
                   f"{report['wall_s']:.0f} s; the load average (1, 5, 15 min) was {load} "
                   "when it began.")
        return [_text_table(cpu_report.TABLE_HEADER, rows), nodes.paragraph(text=summary)]


# Extensions of the build that do not say whether Sphinx may read pages in parallel, and
# what we found when we read them, at these versions. While one extension is undeclared,
# Sphinx reads serially (with a warning: `make book` reads with -j 2 and -W, so a new
# undeclared extension, or a new version of one of these, fails the build until it has
# been read and listed here).
AUDITED_PARALLEL_READ_SAFE = {
    # It replaces TocTreeCollector.assign_section_numbers, which Sphinx calls in the main
    # process after merging the parallel reads (env-updated); no state per document.
    "sphinx_multitoc_numbering": ("sphinx-multitoc-numbering", "0.1.3"),
    # Its read-time transforms change only the document being read; its env attributes
    # are set once at builder-inited, and only for LaTeX builders, before Sphinx forks.
    "sphinx_jupyterbook_latex": ("sphinx-jupyterbook-latex", "1.0.0"),
}


def declare_audited_extensions(app: Sphinx) -> None:
    for name, (distribution, audited) in AUDITED_PARALLEL_READ_SAFE.items():
        extension = app.extensions.get(name)
        if extension is None or extension.parallel_read_safe is not None:
            continue
        if importlib.metadata.version(distribution) == audited:
            extension.parallel_read_safe = True


def write_cached_outputs_too() -> None:
    """Make myst-nb's cache mode leave the executed notebook where force mode leaves it.

    On a cache hit, myst-nb 1.4's ``NotebookClientCache`` merges the cached outputs into a
    *copy* of the notebook: the page is rendered from the copy, but the notebook that
    myst-nb then writes to ``jupyter_execute/`` (the page's ``.ipynb`` download, and the
    source of ``tools/notebooks.py``'s Colab notebooks) is the original, without a single
    output. Copying the merged notebook back into the original object, as executing it
    in place does in force mode, makes both the same again.
    """
    from myst_nb.core.execute.cache import NotebookClientCache

    start_client = NotebookClientCache.start_client
    if getattr(start_client, "course_site", False):
        return

    def start_client_in_place(self) -> None:
        notebook = self._notebook
        start_client(self)
        if self._notebook is not notebook:
            notebook.clear()
            notebook.update(self._notebook)
            self._notebook = notebook

    start_client_in_place.course_site = True
    NotebookClientCache.start_client = start_client_in_place


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("course_notebooks_branch", "gh-pages", "html")
    app.add_config_value("course_student_edition", False, "env")
    app.add_transform(RemoveSolutions)
    app.add_directive("execution-cpu-table", ExecutionCpuTable)
    write_cached_outputs_too()
    app.connect("config-inited", light_by_default)
    app.connect("config-inited", add_accessibility_fixes)
    app.add_js_file("course_a11y.js", priority=900)
    app.add_css_file("course_a11y.css", priority=900)
    # After every extension, the theme's included, is loaded; before Sphinx reads.
    app.connect("builder-inited", declare_audited_extensions)
    app.add_js_file(None, body=MATHJAX2_HUB_SHIM, priority=100)
    app.connect("html-page-context", fix_scripts, priority=900)
    # After sphinx-book-theme has filled context["header_buttons"] (its handlers run at 501).
    app.connect("html-page-context", add_course_buttons, priority=510)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
