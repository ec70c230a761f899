"""``jupyter-book`` with Sphinx reading and writing pages ``--jobs`` at a time.

Usage: ``python tools/jupyter_book_jobs.py --jobs 2 build . --all -W --keep-going``
(the arguments after ``--jobs N`` are jupyter-book's). jupyter-book 1.x passes
``jobs`` to Sphinx (``jupyter_book.sphinx.build_sphinx``) but its command line has no
option for it; this sets it. Sphinx forks ``N`` processes for reading and writing
pages only when every extension declares itself parallel-safe (``tools/course_site.py``
declares the two that do not, after reading them), and says "doing serial read"
otherwise, which fails a ``-W`` build.

The chapters are executed before this, ``--jobs`` at a time, by ``tools/execute.py``;
the build takes their outputs from the cache and executes nothing itself.
"""
from __future__ import annotations

import functools
import sys


def main(argv: list[str]) -> None:
    jobs = 1
    if argv[:1] == ["--jobs"]:
        jobs, argv = int(argv[1]), argv[2:]
    import jupyter_book.sphinx as book_sphinx
    from jupyter_book.cli.main import main as cli

    # The build command imports build_sphinx from jupyter_book.sphinx when it runs.
    book_sphinx.build_sphinx = functools.partial(book_sphinx.build_sphinx, jobs=jobs)
    cli.main(args=argv, prog_name="jupyter-book")


if __name__ == "__main__":
    main(sys.argv[1:])
