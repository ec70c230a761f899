"""What each chapter cost to execute, and the check that none exceeds the CPU budget.

Usage: ``python tools/cpu_report.py [REPORT] [--limit 75] [--warn-only]`` (``make book``
runs it last; ``REPORT`` defaults to ``_build/execution_report.json``).

``tools/execute.py`` writes the report: for every chapter, the CPU seconds of its
kernel (user + system), its wall seconds, the CPU seconds of each of its cells, the
load average when it started, and whether this build executed it or took it from the
cache (``make draft``). Wall seconds on a shared machine depend on what else runs;
CPU seconds barely do, so the budget is in CPU seconds: every chapter at most
``--limit`` (the course's 75, shared/CONVENTIONS.md). For a chapter over it, the check
prints its heaviest cells, where to start making it cheaper.

The check also fails when the report misses a chapter of the toc, or when the cache
holds a notebook that ``tools/execute.py`` did not measure: myst-nb executed it during
the site build, because its code cells as Sphinx read them differ from the ones
executed beforehand, and its cost went unmeasured.

The execution status page shows the report as a table (the ``execution-cpu-table``
directive of ``tools/course_site.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT_CPU_S = 75.0
REPORT = ROOT / "_build" / "execution_report.json"


def report_path(cache: Path) -> Path:
    """The report lives beside the jupyter-cache it describes (``_build/`` of a build)."""
    return Path(cache).parent / "execution_report.json"


def chapter_key(path: Path) -> str:
    """A chapter's name in the report: its path from the repository root (``book/vae.md``)."""
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def write_report(path: Path, chapters: list[tuple[Path, dict]], *, jobs: int, wall_s: float,
                 load: tuple, earlier: list[dict] = ()) -> dict:
    """Write the report of ``chapters``; ``earlier`` keeps other chapters' entries of a previous report."""
    report = {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "jobs": jobs, "wall_s": round(wall_s, 1), "cpus": os.cpu_count(),
              "load_before": [round(x, 2) for x in load[0]],
              "load_after": [round(x, 2) for x in load[1]],
              "chapters": [{"chapter": chapter_key(p), **m} for p, m in chapters] + list(earlier)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def load_report(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None


def chapters_by_key(path: Path) -> dict[str, dict]:
    report = load_report(path) or {"chapters": []}
    return {c["chapter"]: c for c in report["chapters"]}


def longest_first(paths: list[Path], previous: dict[str, dict]) -> list[Path]:
    """Chapters without a previous measurement first (in the given order), then by decreasing CPU.

    Two at a time, the longest first finish soonest together (and the short ones fill in).
    """
    def key(item: tuple[int, Path]):
        before = previous.get(chapter_key(item[1]))
        return (0, item[0]) if before is None else (1, -before["cpu_s"])
    return [p for _, p in sorted(enumerate(paths), key=key)]


def heaviest_cells(chapter: dict, n: int = 3) -> list[dict]:
    return sorted(chapter.get("cells", []), key=lambda c: -c["cpu_s"])[:n]


def describe_cell(chapter: dict, cell: dict) -> str:
    where = f"{chapter['chapter']}:{cell['line']}" if cell.get("line") else chapter["chapter"]
    return f"{cell['cpu_s']:.1f} CPU s ({cell['wall_s']:.1f} s wall) in the cell at {where}: {cell['source']}"


def over_budget(report: dict, limit: float = LIMIT_CPU_S) -> list[str]:
    """One paragraph per chapter over the budget, with its heaviest cells."""
    out = []
    for chapter in report["chapters"]:
        if chapter["cpu_s"] > limit:
            lines = [f"{chapter['chapter']}: {chapter['cpu_s']:.1f} CPU s, over the budget of "
                     f"{limit:g}; its heaviest cells:"]
            lines += ["  " + describe_cell(chapter, c) for c in heaviest_cells(chapter)]
            out.append("\n".join(lines))
    return out


def missing_chapters(report: dict, chapters: list[Path]) -> list[str]:
    have = {c["chapter"] for c in report["chapters"]}
    return [chapter_key(p) for p in chapters if chapter_key(p) not in have]


def unmeasured_in_cache(cache: Path) -> list[str]:
    """Notebooks in the jupyter-cache without a measurement: myst-nb executed them itself."""
    if not Path(cache).is_dir():
        return []
    from jupyter_cache import get_cache
    return sorted({r.uri for r in get_cache(str(cache)).list_cache_records()
                   if "cpu_s" not in (r.data or {})})


def table_rows(report: dict) -> list[list[str]]:
    """The execution status page's table: one row per chapter, as text cells."""
    rows = []
    for c in report["chapters"]:
        top = heaviest_cells(c, 1)
        cell = f"{top[0]['cpu_s']:.1f} (line {top[0]['line']})" if top else ""
        how = "this build" if c.get("executed") else f"cache ({c.get('measured', '')[:10]})"
        rows.append([c["chapter"], f"{c['cpu_s']:.1f}", f"{c['wall_s']:.1f}", cell,
                     f"{c['load'][0]:.2f}" if c.get("load") else "", how])
    return rows


TABLE_HEADER = ["Chapter", "CPU s", "Wall s", "Heaviest cell, CPU s", "Load average", "Executed"]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from chapters import toc_notebooks
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", nargs="?", type=Path, default=REPORT)
    parser.add_argument("--limit", type=float, default=LIMIT_CPU_S, help="CPU seconds per chapter")
    parser.add_argument("--warn-only", action="store_true", help="print, but do not fail")
    args = parser.parse_args(argv)
    report = load_report(args.report)
    if report is None:
        print(f"No report at {args.report}: run tools/execute.py (make book) first.", file=sys.stderr)
        return 1
    problems = over_budget(report, args.limit)
    problems += [f"{name}: not in the report (not executed by tools/execute.py)"
                 for name in missing_chapters(report, toc_notebooks())]
    problems += [f"{uri}: executed by myst-nb during the site build, unmeasured (its code cells "
                 "as Sphinx reads them differ from tools/execute.py's)"
                 for uri in unmeasured_in_cache(args.report.parent / ".jupyter_cache")]
    total = sum(c["cpu_s"] for c in report["chapters"])
    print(f"CPU budget: {len(report['chapters'])} chapters, {total:.0f} CPU s in all, the heaviest "
          f"{max((c['cpu_s'] for c in report['chapters']), default=0):.1f} (limit {args.limit:g}).")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems and not args.warn_only else 0


if __name__ == "__main__":
    sys.exit(main())
