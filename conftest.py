"""Run the chapters listed in ``_toc.yml`` under nbval, straight from their MyST sources.

nbval collects ``.ipynb`` files only; the chapters are MyST Markdown notebooks
(jupytext). This hook hands nbval each ``.md`` chapter named in ``_toc.yml``,
read with jupytext, so the kernel runs in the chapter's own folder and no
converted copy can go stale. Use: ``pytest book --nbval-lax --nbval-current-env``.

Under pytest-xdist (``make test``: ``-n 2 --dist loadfile --no-loadscope-reorder``)
each worker takes whole files, so a chapter's cells run in order in one kernel. The
chapters come first, longest first by the last book build's report
(``_build/execution_report.json``; toc order without one), and the unit tests fill in
after them. The controller decides the order and hands it to every worker, which must
collect the same items in the same order. A worker runs its unit tests on one thread,
as each chapter does, so two workers share two cores.
"""
from __future__ import annotations

import importlib.util
import resource
import time
from pathlib import Path

import jupytext
import nbval.plugin
import pytest

ROOT = Path(__file__).resolve().parent


def _load_chapters():
    """tools/chapters.py, loaded by path (tools/ is not a package, and stays off sys.path)."""
    spec = importlib.util.spec_from_file_location("course_chapters", ROOT / "tools" / "chapters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_chapters = _load_chapters()
toc_entries, is_notebook, toc_notebooks = (_chapters.toc_entries, _chapters.is_notebook,
                                           _chapters.toc_notebooks)
ORDER_KEY = "course_chapter_order"         # in xdist's workerinput
_ORDER = pytest.StashKey[list]()


def chapter_order() -> list[str]:
    """The toc's chapters, longest first by the last book build's report (see the docstring)."""
    spec = importlib.util.spec_from_file_location("course_cpu_report", ROOT / "tools" / "cpu_report.py")
    cpu_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cpu_report)
    previous = cpu_report.chapters_by_key(cpu_report.REPORT)
    return [str(p.resolve()) for p in cpu_report.longest_first(toc_notebooks(), previous)]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist controller: every worker gets the same chapter order."""
    node.workerinput[ORDER_KEY] = node.config.stash.setdefault(_ORDER, chapter_order())


def pytest_configure(config: pytest.Config) -> None:
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[_ORDER] = workerinput[ORDER_KEY]
        import torch
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The chapters first, in the order above; everything else after them, in its order."""
    if not any(isinstance(item.parent, MarkdownNotebook) for item in items):
        return
    order = config.stash.get(_ORDER, None)
    if order is None:
        order = config.stash[_ORDER] = chapter_order()
    rank = {path: i for i, path in enumerate(order)}

    def key(item: pytest.Item) -> tuple[int, int]:
        if isinstance(item.parent, MarkdownNotebook):
            return (0, rank.get(str(item.parent.path.resolve()), len(rank)))
        return (1, 0)
    items.sort(key=key)         # stable: a chapter's cells and the other tests keep their order


class _JupytextReader:
    """Stands in for the ``nbformat`` module inside nbval while it reads one chapter."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self, *_args: object, **_kwargs: object):
        return jupytext.read(self.path)


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's children that have ended: its kernels."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class MarkdownNotebook(nbval.plugin.IPyNbFile):
    """nbval's notebook collector, reading a MyST Markdown notebook through jupytext.

    It also measures the chapter's kernel: nbval starts it in ``setup`` and stops it in
    ``teardown``, and meanwhile this process (one pytest worker) runs nothing else, so
    the growth of its children's CPU time is that kernel's CPU time.
    """

    cost: tuple[float, float] | None = None          # (CPU s, wall s), once torn down

    def collect(self):
        original = nbval.plugin.nbformat
        nbval.plugin.nbformat = _JupytextReader(self.path)
        try:
            items = list(super().collect())
        finally:
            nbval.plugin.nbformat = original
        return items

    def setup(self):
        self._start = (_children_cpu(), time.perf_counter())
        super().setup()

    def teardown(self):
        super().teardown()
        self.cost = (_children_cpu() - self._start[0], time.perf_counter() - self._start[1])


COST = "chapter_kernel_cost"
_costs: dict[str, tuple[float, float]] = {}      # chapter -> its kernel's (CPU s, wall s)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """After a chapter's last cell, its kernel's cost rides on that cell's teardown report
    (which xdist hands to the controller)."""
    result = yield
    if isinstance(item.parent, MarkdownNotebook) and item.parent.cost is not None:
        item.user_properties.append((COST, item.parent.cost))
        item.parent.cost = None
    return result


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties if report.when == "teardown" else ():
        if name == COST:
            _costs[report.location[0]] = tuple(value)


def pytest_terminal_summary(terminalreporter) -> None:
    """Each chapter's kernel CPU and wall seconds (the book build checks the budget)."""
    if not _costs:
        return
    terminalreporter.section("chapter kernels: CPU s (user + system), wall s")
    for name, (cpu, wall) in sorted(_costs.items(), key=lambda kv: -kv[1][0]):
        terminalreporter.write_line(f"{cpu:7.1f} {wall:7.1f}  {name}")
    terminalreporter.write_line(f"{sum(c for c, _ in _costs.values()):7.1f}          in all")


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    opt = parent.config.option
    if not (opt.nbval or opt.nbval_lax) or file_path.suffix != ".md":
        return None
    if file_path.resolve() in {p.resolve() for p in toc_notebooks()}:
        return MarkdownNotebook.from_parent(parent, path=file_path)
    return None
