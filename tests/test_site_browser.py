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

Every deck is also measured as the room sees it, at 1280x720 with MathJax typeset
(``tools/slides.py``: ``SLIDE_STATS_JS``, prose as ``NOT_PROSE`` defines it): the median
slide shows at most ``MEDIAN_PROSE_WORDS`` words of prose, none more than
``MAX_PROSE_WORDS``, and no slide is taller than the screen (``scrollHeight <=
clientHeight``).

Accessibility: axe-core (served by the site from ``_vendor/axe-core``, installed from npm
like reveal.js) audits every page of the toc and the first chapter's deck; a violation of
impact "serious" or "critical" fails, with its rule, page and elements. And every content
image of a page (in the article: cell outputs, figures) has alt text a screen reader can
use: not empty, not its file name or a hash, at least ``MIN_ALT_CHARS`` characters.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import statistics
import sys
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
MEDIAN_PROSE_WORDS = 40      # prose words on the median slide of a deck, at most
MAX_PROSE_WORDS = 120        # and on any slide
MIN_ALT_CHARS = 20           # a content image's alt text, at least
AXE_FAILS_ON = ("serious", "critical")
AXE = "_vendor/axe-core/axe.min.js"


sys.path.insert(0, str(ROOT / "tools"))
import browser as browser_tools  # noqa: E402  (tools/browser.py: the Chromium and the local server)
import slides  # noqa: E402  (tools/slides.py: the prose-word count and the slide measurement)


def toc_pages() -> list[tuple[str, bool]]:
    """(docname, is_notebook) for every file in _toc.yml, in reading order."""
    return [(path.relative_to(BOOK).with_suffix("").as_posix(), is_notebook(path))
            for path in toc_entries(TOC) if path.is_file()]


PAGES = toc_pages()
CHAPTERS = [name for name, notebook in PAGES if notebook]


@pytest.fixture(scope="module")
def server():
    if not (SITE / "index.html").is_file():
        pytest.skip(f"no built site in {SITE}: run `make book` first (make site-test does)")
    with browser_tools.serve(SITE) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = browser_tools.chromium_path()
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
    check_slides_fit(deck, name)
    if name == CHAPTERS[0]:
        check_axe(deck, f"slides of {name}")
    deck.evaluate("() => Reveal.slide(1, 0)")
    deck.wait_for_timeout(300)
    deck.screenshot(path=str(SHOTS / f"{shot_name}.slide.png"))
    reader.check_clean()


def slide_stats(deck) -> list[dict]:
    """Per slide: prose words, notes' words, scrollHeight, clientHeight (tools/slides.py)."""
    deck.evaluate("() => document.fonts.ready.then(() => true)")
    return deck.evaluate(slides.SLIDE_STATS_JS, slides.NOT_PROSE)


def check_slides_fit(deck, name: str) -> None:
    """Short slides, none taller than the 1280x720 screen."""
    stats = slide_stats(deck)
    words = [s["words"] for s in stats]
    where = lambda s: f"slide {s['index'] + 1} ({s['title'][:40]!r})"  # noqa: E731
    assert statistics.median(words) <= MEDIAN_PROSE_WORDS, \
        f"slides of {name}: median {statistics.median(words)} prose words per slide (at most {MEDIAN_PROSE_WORDS})"
    wordy = [f"{where(s)}: {s['words']} words" for s in stats if s["words"] > MAX_PROSE_WORDS]
    assert not wordy, f"slides of {name}: more than {MAX_PROSE_WORDS} prose words on " + "; ".join(wordy)
    tall = [f"{where(s)}: {s['scrollHeight']} px of content in {s['clientHeight']} px"
            for s in stats if s["scrollHeight"] > s["clientHeight"]]
    assert not tall, f"slides of {name}: taller than the screen: " + "; ".join(tall)


def check_axe(page, where: str) -> None:
    """No axe-core violation of impact serious or critical on the page as it is now."""
    page.add_script_tag(path=str(SITE / AXE))
    violations = page.evaluate("""async (fails) => {
        const result = await axe.run(document, {resultTypes: ['violations']});
        return result.violations.filter(v => fails.includes(v.impact)).map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            targets: v.nodes.map(n => n.target.join(' '))}));
    }""", list(AXE_FAILS_ON))
    lines = [f"{where}: {v['impact']} {v['id']} ({v['help']}) at {len(v['targets'])} element(s): "
             + ", ".join(v["targets"][:6]) for v in violations]
    assert not lines, "axe-core:\n" + "\n".join(lines)


@pytest.mark.parametrize("name", [name for name, _ in PAGES])
def test_page_passes_the_accessibility_audit(reader, name):
    page = reader.open(html_path(name))
    wait_for_mathjax(page)
    check_images(page, name)
    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if views:       # audit the widgets as drawn
        page.wait_for_function("n => document.querySelectorAll('.jupyter-widgets').length >= n", arg=views)
        page.wait_for_timeout(500)
    check_axe(page, name)


HASH_LIKE = re.compile(r"^[0-9a-f]{16,}(\.\w+)?$", re.IGNORECASE)


def alt_problem(src: str, alt: str | None) -> str | None:
    """Why `alt` is no use to a screen reader for the image at `src` (None: it is)."""
    alt = " ".join((alt or "").split())
    name = posixpath.basename(src.split("?")[0])
    if not alt:
        return "no alt text"
    alt_name = posixpath.basename(alt)       # myst-nb writes the image's path as its alt
    if name in (alt, alt_name) or posixpath.splitext(name)[0] in (alt, alt_name) or HASH_LIKE.match(alt_name):
        return f"alt text is its file name ({alt!r})"
    if len(alt) < MIN_ALT_CHARS:
        return f"alt text too short to describe it ({alt!r})"
    return None


def test_alt_rule():
    assert alt_problem("../_images/abc.png", "") == "no alt text"
    assert "file name" in alt_problem("../_images/0f3a9c2e1b7d4e5f6a7b.png", "0f3a9c2e1b7d4e5f6a7b.png")
    assert "file name" in alt_problem("x/fig.png", "fig")
    assert "file name" in alt_problem("../_images/3f2302164c.png", "../_images/3f2302164c.png")
    assert "too short" in alt_problem("x/fig.png", "A plot")
    assert alt_problem("x/fig.png", "Two panels: real digits left, VAE samples right, smoother.") is None


@pytest.mark.parametrize("name", [name for name, _ in PAGES])
def test_content_images_have_alt_text(name):
    from bs4 import BeautifulSoup

    path = SITE / html_path(name)
    if not path.is_file():
        pytest.skip(f"no built site in {SITE}: run `make book` first (make site-test does)")
    article = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser").select_one("article.bd-article")
    problems = [f"{img.get('src')}: {why}" for img in article.find_all("img")
                if (why := alt_problem(img.get("src", ""), img.get("alt")))]
    assert not problems, f"{name}: {len(problems)} content image(s) without a useful alt text:\n" \
        + "\n".join(problems)
