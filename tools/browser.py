"""Headless Chromium on the built site, for the tools that print it (``tools/book_pdf.py``).

The browser is Debian's Chromium (``/usr/bin/chromium``, which ``.ci/run`` installs) or the
one named by ``$CHROMIUM``; Playwright drives it, and its own browser downloads are never
used. The site is served on 127.0.0.1 and every request that leaves 127.0.0.1 is aborted, so
a printed page shows exactly what a classroom without internet sees.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

TIMEOUT_MS = 120_000     # generous: the CI machine is small and may be busy


def chromium_path() -> str | None:
    """The Chromium to drive: ``$CHROMIUM``, else the first one found on this machine."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on a free port of 127.0.0.1; yields the base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _local_only(route) -> None:
    host = urlparse(route.request.url).hostname
    if host in ("127.0.0.1", "localhost") or route.request.url.startswith(("data:", "blob:")):
        route.continue_()
    else:
        route.abort()


@contextlib.contextmanager
def offline_page(width: int = 1280, height: int = 720) -> Iterator:
    """A Playwright page in headless Chromium whose requests may only reach 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise SystemExit("no Chromium found: install Debian's `chromium` (.ci/run does) "
                         "or set CHROMIUM=/path/to/chrome")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            page.route("**/*", _local_only)
            yield page
        finally:
            browser.close()


def wait_for_mathjax(page) -> None:
    """Wait until MathJax (if the page loads it) has typeset every equation."""
    page.wait_for_function("() => !window.MathJax || (window.MathJax.startup && "
                           "window.MathJax.startup.promise !== undefined)")
    page.evaluate("() => window.MathJax && window.MathJax.startup ? "
                  "window.MathJax.startup.promise : null")
