"""The built site as a reader sees it: every page opened in headless Chromium.

Run after ``make book`` with ``make site-test``. Playwright drives Debian's Chromium
(``/usr/bin/chromium``, or the browser named by ``$CHROMIUM``; Playwright's own browser
downloads are not used). The site is served on 127.0.0.1 and every request that
leaves 127.0.0.1 is blocked and fails the test, so the site is checked as a classroom
without internet sees it.

For every page in ``_toc.yml``: it loads with no console error, MathJax typeset every
equation, every image loaded, and the "next" link opens the next page of the toc.
For every chapter (a notebook) also: the launch (Binder, Colab) and download
(``.ipynb``) buttons are there and their local targets are valid notebooks, embedded
widgets render, and the slides button opens a reveal.js deck that loads cleanly.
Screenshots of each chapter and of a slide of its deck go to ``_build/screenshots/``.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("COURSE_SITE", ROOT / "_build" / "html"))
BOOK = Path(os.environ.get("COURSE_ROOT", ROOT))        # where the sources and _toc.yml are
TOC = Path(os.environ.get("COURSE_TOC", BOOK / "_toc.yml"))
SHOTS = Path(os.environ.get("COURSE_SCREENSHOTS", ROOT / "_build" / "screenshots"))

sys.path.insert(0, str(ROOT))
from conftest import is_notebook, toc_entries  # noqa: E402  (the repository's root conftest.py)
TIMEOUT_MS = 60_000          # generous: the CI machine is small and may be busy


def toc_pages() -> list[tuple[str, bool]]:
    """(docname, is_notebook) for every file in _toc.yml, in reading order."""
    return [(path.relative_to(BOOK).with_suffix("").as_posix(), is_notebook(path))
            for path in toc_entries(TOC) if path.is_file()]


PAGES = toc_pages()
CHAPTERS = [name for name, notebook in PAGES if notebook]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        pytest.skip(f"no built site in {SITE}: run `make book` first (make site-test does)")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_path()
    if executable is None:
        pytest.fail("no Chromium found: `apt-get install chromium` (Debian) or set CHROMIUM=/path/to/chrome")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        yield browser
        browser.close()


class Reader:
    """A browser context that records console errors and blocks every non-local request."""

    def __init__(self, browser, server: str):
        self.server = server
        self.host = urlparse(server).netloc
        self.errors: list[str] = []
        self.offsite: list[str] = []
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.context.route("**/*", self._route)
        self.context.on("page", self._watch)

    def _route(self, route):
        url = route.request.url
        if urlparse(url).scheme in ("http", "https") and urlparse(url).netloc != self.host:
            self.offsite.append(url)
            route.abort()
        else:
            route.continue_()

    def _watch(self, page):
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(
            f"{page.url}: console error: {msg.text}"))
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: uncaught exception: {exc}"))
        page.on("requestfailed", lambda req: urlparse(req.url).netloc == self.host and self.errors.append(
            f"{page.url}: failed to load {req.url}"))
        # (a browser may ask for /favicon.ico by itself; the site has none)
        page.on("response", lambda resp: resp.status >= 400 and not resp.url.endswith("/favicon.ico")
                and self.errors.append(f"{page.url}: HTTP {resp.status} for {resp.url}"))

    def open(self, path: str):
        page = self.context.new_page()
        page.goto(f"{self.server}/{path}", wait_until="load")
        return page

    def check_clean(self):
        assert not self.offsite, f"requests that left 127.0.0.1: {self.offsite}"
        assert not self.errors, "\n".join(self.errors)

    def close(self):
        self.context.close()


@pytest.fixture
def reader(browser, server):
    r = Reader(browser, server)
    yield r
    r.close()


def wait_for_mathjax(page) -> None:
    """Until MathJax (on pages that load it) has finished its first typesetting pass."""
    page.wait_for_function("() => window.MathJax === undefined || (MathJax.startup && MathJax.startup.promise)")
    page.evaluate("() => window.MathJax === undefined || MathJax.startup.promise.then(() => true)")


def check_mathjax(page, where: str) -> None:
    """Every span.math / div.math was typeset, with no TeX error."""
    counts = page.evaluate("""() => {
        const math = [...document.querySelectorAll('span.math, div.math')];
        return {math: math.length,
                typeset: math.filter(m => m.querySelector('mjx-container')).length,
                errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length};
    }""")
    assert counts["typeset"] == counts["math"], f"{where}: MathJax typeset {counts}"
    assert counts["errors"] == 0, f"{where}: MathJax reports TeX errors: {counts}"


def check_images(page, where: str) -> int:
    page.wait_for_function("() => [...document.images].every(img => img.complete)")
    broken = page.evaluate("() => [...document.images].filter(i => i.naturalWidth === 0).map(i => i.src)")
    assert not broken, f"{where}: broken images {broken}"
    return page.evaluate("() => document.images.length")


def html_path(docname: str) -> str:
    return f"{docname}.html"


@pytest.mark.parametrize("index", range(len(PAGES)), ids=[name for name, _ in PAGES])
def test_page_loads_renders_and_leads_to_the_next(reader, index):
    name, _ = PAGES[index]
    page = reader.open(html_path(name))
    wait_for_mathjax(page)
    check_mathjax(page, name)
    check_images(page, name)
    if index + 1 < len(PAGES):
        next_name = PAGES[index + 1][0]
        link = page.locator("a.right-next")
        assert link.count() == 1, f"{name}: no link to the next page"
        link.click()
        page.wait_for_load_state("load")
        assert urlparse(page.url).path == "/" + html_path(next_name), \
            f"{name}: 'next' opened {page.url}, expected {next_name}"
    reader.check_clean()


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_buttons_widgets_and_slides(reader, name):
    page = reader.open(html_path(name))
    wait_for_mathjax(page)

    # Launch buttons: Binder opens the chapter's source; Colab a notebook the site publishes.
    launch = page.locator(".dropdown-launch-buttons a")
    hrefs = {launch.nth(i).inner_text().strip(): launch.nth(i).get_attribute("href") for i in range(launch.count())}
    assert {"Binder", "Colab"} <= set(hrefs), f"{name}: launch buttons {hrefs}"
    assert hrefs["Binder"].endswith(f"urlpath=lab/tree/{name}.md"), hrefs["Binder"]
    assert hrefs["Colab"].endswith(f"/_notebooks/{name}.ipynb"), hrefs["Colab"]
    colab_copy = page.request.get(f"{reader.server}/_notebooks/{name}.ipynb")
    assert colab_copy.ok, f"{name}: _notebooks/{name}.ipynb missing from the site"
    cells = json.loads(colab_copy.text())["cells"]
    assert "course-setup" in cells[0]["metadata"].get("tags", []), f"{name}: no setup cell for Colab"

    # Download buttons: the executed notebook, with its outputs.
    download = page.locator(".dropdown-download-buttons a.btn-download-notebook-button")
    assert download.count() == 1, f"{name}: no .ipynb download button"
    response = page.request.get(download.first.evaluate("a => a.href"))
    assert response.ok
    notebook = json.loads(response.text())
    assert any(c.get("outputs") for c in notebook["cells"] if c["cell_type"] == "code"), \
        f"{name}: the downloadable notebook has no outputs"

    # Widgets whose state myst-nb embedded render without a kernel.
    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if views:
        page.wait_for_function("n => document.querySelectorAll('.jupyter-widgets').length >= n", arg=views)

    SHOTS.mkdir(parents=True, exist_ok=True)
    shot_name = name.replace("/", "__")
    page.screenshot(path=str(SHOTS / f"{shot_name}.png"))

    # The slides button opens the chapter's deck.
    button = page.locator("a.btn-slides-button")
    assert button.count() == 1, f"{name}: no slides button"
    with reader.context.expect_page() as new_page:
        button.click()
    deck = new_page.value
    deck.wait_for_load_state("load")
    assert urlparse(deck.url).path == f"/slides/{name}.html"
    deck.wait_for_function("() => window.Reveal && Reveal.isReady()")
    total = deck.evaluate("() => Reveal.getTotalSlides()")
    assert total >= 2, f"{name}: the deck has {total} slide(s)"
    wait_for_mathjax(deck)
    check_mathjax(deck, f"slides of {name}")
    check_images(deck, f"slides of {name}")
    deck.evaluate("() => Reveal.slide(1, 0)")
    deck.wait_for_timeout(300)
    deck.screenshot(path=str(SHOTS / f"{shot_name}.slide.png"))
    reader.check_clean()
