"""Execute the chapters two at a time before the site build, and measure what each costs.

Usage: ``python tools/execute.py [--jobs 2] [--changed-only] [CHAPTER.md ...]``
(``make book`` runs it on every chapter; ``make draft`` with ``--changed-only``).

Every chapter runs its models on one thread, so on two cores two chapters can run
at once. Sphinx cannot do that for us: myst-nb executes a notebook while Sphinx
reads it, and ``jupyter-book build`` reads one page at a time (it has no ``-j``; and
with ``sphinx-build -j`` Sphinx still reads serially, with a warning, as long as one
extension does not declare itself parallel-safe). So this script executes the
chapters first, ``--jobs`` at a time (longest first, by the last build's report when
there is one), and stores each executed notebook in the jupyter-cache that myst-nb
reads with ``execute_notebooks: cache`` (``_config.yml``); the site build then
executes nothing. The pages are the same as if myst-nb had executed them: the same
reader (myst-nb's own, the one it hands to jupyter-cache), the same call
(``jupyter_cache``'s ``single_nb_execution``, which myst-nb uses), the same working
directory (the chapter's folder), timeout and ``allow_errors`` (``_config.yml``), and
myst-nb merges the cached outputs into the page exactly as it does for its own cache.

Each chapter runs in a fresh worker process whose only child is the chapter's kernel,
and the script measures that kernel: its CPU seconds (user + system, the kernel's own
and those of processes it waited for; ``getrusage(RUSAGE_CHILDREN)`` of the worker,
which noise from other processes on the machine cannot inflate), its wall seconds, and
the CPU seconds of every cell (the kernel's ``cpu_times`` before and after the cell).
The numbers go into the cache record with the notebook and into the build's report
(``_build/execution_report.json``, see ``tools/cpu_report.py``), which the execution
status page shows and ``tools/cpu_report.py`` checks against the budget.

``--changed-only`` (authors, ``make draft``) executes only the chapters whose code
cells or kernel have no executed notebook in the cache - jupyter-cache's own test,
so a prose-only edit executes nothing - and reports the others' measurements from
their cache records. It cannot see a change in ``companion/``: ``make book`` (and CI)
always executes everything.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cpu_report  # noqa: E402  (a sibling in tools/)
from chapters import ROOT, toc_notebooks  # noqa: E402

CACHE = ROOT / "_build" / ".jupyter_cache"      # where Jupyter Book points myst-nb's cache
MEASURED = "cpu_s"                              # a cache record measured by this script has it


def read_chapter(path: Path) -> nbformat.NotebookNode:
    """The notebook exactly as myst-nb reads it for jupyter-cache (its ``myst_nb_md`` reader)."""
    from myst_nb.core.read import myst_nb_reader_plugin
    return myst_nb_reader_plugin(str(path))


def execution_settings(config: Path = ROOT / "_config.yml") -> dict:
    """Timeout and allow_errors as the book's ``execute:`` section sets them for myst-nb."""
    execute = yaml.safe_load(config.read_text()).get("execute", {})
    return {"timeout": execute.get("timeout", 30), "allow_errors": execute.get("allow_errors", False)}


def _cpu(times) -> float:
    return times.user + times.system + times.children_user + times.children_system


class KernelMeter:
    """nbclient hooks that read the kernel's CPU time around every cell."""

    def __init__(self, source_map: list[int]) -> None:
        self.source_map = source_map
        self.kernel = None
        self.cells: list[dict] = []
        self._start: tuple[float, float] = (0.0, 0.0)

    def on_notebook_start(self, notebook, **_):
        import psutil
        kernels = [p for p in psutil.Process().children()     # the worker's only child
                   if "ipykernel" in " ".join(p.cmdline())]
        self.kernel = kernels[0] if len(kernels) == 1 else None

    def _now(self) -> tuple[float, float]:
        return _cpu(self.kernel.cpu_times()), time.perf_counter()

    def on_cell_execute(self, cell, cell_index, **_):
        if self.kernel is not None:
            self._start = self._now()

    def on_cell_executed(self, cell, cell_index, **_):
        if self.kernel is None:         # not a local ipykernel: the chapter's total still counts
            return
        cpu, wall = self._now()
        line = self.source_map[cell_index] + 1 if cell_index < len(self.source_map) else None
        first = next((s for s in cell.source.splitlines() if s.strip()), "")
        self.cells.append({"index": cell_index, "line": line, "source": first[:80],
                           "cpu_s": round(cpu - self._start[0], 2),
                           "wall_s": round(wall - self._start[1], 2)})


def execute_chapter(path: str, timeout: int, allow_errors: bool) -> dict:
    """Worker: execute one chapter as myst-nb does, and measure its kernel."""
    from jupyter_cache.executors.utils import single_nb_execution
    nb = read_chapter(Path(path))
    meter = KernelMeter(list(nb.metadata.get("source_map", [])))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    result = single_nb_execution(nb, cwd=str(Path(path).parent), timeout=timeout,
                                 allow_errors=allow_errors, meta_override=True,
                                 on_notebook_start=meter.on_notebook_start,
                                 on_cell_execute=meter.on_cell_execute,
                                 on_cell_executed=meter.on_cell_executed)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    return {"path": path, "notebook": nbformat.writes(result.nb),
            "error": result.exc_string if result.err is not None else None,
            "measurement": {MEASURED: round(user + system, 2), "cpu_user_s": round(user, 2),
                            "cpu_system_s": round(system, 2), "wall_s": round(result.time, 2),
                            "execution_seconds": result.time,       # myst-nb's "Run Time" column
                            "load": [round(x, 2) for x in load],
                            "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                            "cells": meter.cells}}


def _execute_chapter(args: tuple[str, int, bool]) -> dict:
    return execute_chapter(*args)


def cached_measurement(cache, path: Path) -> dict | None:
    """The measurement stored with this chapter's executed notebook, if the cache has one."""
    try:
        record = cache.match_cache_notebook(read_chapter(path))
    except KeyError:
        return None
    return dict(record.data) if MEASURED in (record.data or {}) else None


def run(paths: list[Path], jobs: int, cache_path: Path, report_path: Path, changed_only: bool) -> int:
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(str(cache_path))
    previous = cpu_report.chapters_by_key(report_path)
    measured: dict[Path, dict] = {}
    if changed_only:
        for path in paths:
            found = cached_measurement(cache, path)
            if found is not None:
                measured[path] = {**found, "executed": False}
    todo = cpu_report.longest_first([p for p in paths if p not in measured], previous)
    settings = execution_settings()
    print(f"Executing {len(todo)} of {len(paths)} chapters, {jobs} at a time "
          f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    started, load_before, failed = time.perf_counter(), os.getloadavg(), []
    # A fresh worker process per chapter: its only child is that chapter's kernel.
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, maxtasksperchild=1) as pool:
        tasks = [(str(p), settings["timeout"], settings["allow_errors"]) for p in todo]
        for out in pool.imap_unordered(_execute_chapter, tasks):
            path, name = Path(out["path"]), cpu_report.chapter_key(Path(out["path"]))
            if out["error"] is not None:
                failed.append(name)
                print(f"{name}: FAILED\n{out['error']}", file=sys.stderr, flush=True)
                continue
            nb = nbformat.reads(out["notebook"], as_version=nbformat.NO_CONVERT)
            cache.cache_notebook_bundle(CacheBundleIn(nb, str(path), data=out["measurement"]),
                                        check_validity=False, overwrite=True)
            measured[path] = {**out["measurement"], "executed": True}
            m = out["measurement"]
            print(f"{name}: {m[MEASURED]:.1f} CPU s, {m['wall_s']:.1f} s wall", flush=True)
    if failed:
        print(f"Execution failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    names = {cpu_report.chapter_key(p) for p in paths}      # a run on some chapters keeps the others' entries
    cpu_report.write_report(report_path, [(p, measured[p]) for p in paths], jobs=jobs,
                            wall_s=time.perf_counter() - started, load=(load_before, os.getloadavg()),
                            earlier=[{**c, "executed": False} for key, c in previous.items() if key not in names])
    print(f"Executed in {time.perf_counter() - started:.0f} s; report: {report_path}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="default: every notebook in _toc.yml")
    parser.add_argument("--jobs", type=int, default=2, help="chapters executed at a time")
    parser.add_argument("--changed-only", action="store_true",
                        help="execute only chapters without an executed notebook in the cache")
    parser.add_argument("--cache", type=Path, default=CACHE, help="the jupyter-cache myst-nb reads")
    parser.add_argument("--report", type=Path, default=None,
                        help="where to write the report (default: beside the cache)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.chapters] or toc_notebooks()
    report = args.report or cpu_report.report_path(args.cache)
    return run(paths, max(args.jobs, 1), args.cache, report, args.changed_only)


if __name__ == "__main__":
    sys.exit(main())
