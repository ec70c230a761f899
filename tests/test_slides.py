"""The slide decks (tools/slides.py): the authors' rule, and every chapter's deck.

The first tests build a deck from a small hand-written page and run in ``make test``.
The tests marked ``site`` build each chapter's deck again from the built site (after
``make book``; ``make site-test`` runs them) and check it against the chapter's source:
one slide per ``##`` section after the title slide, one sub-slide per ``###``, the
executed figures, and no check cell (tag ``remove-cell``) or solution anywhere in it;
every paragraph of the page is in the speaker notes of its section's slides; and the
deck's handout (``slides/<page>.pdf``) has a page per slide and the notes' text.
(The browser test measures the slides: words on them, and that each fits the screen.)
"""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

import jupytext
import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
SITE = Path(os.environ.get("COURSE_SITE", ROOT / "_build" / "html"))
BOOK = Path(os.environ.get("COURSE_ROOT", ROOT))        # where the sources and _toc.yml are
TOC = Path(os.environ.get("COURSE_TOC", BOOK / "_toc.yml"))

sys.path.insert(0, str(ROOT))
from conftest import is_notebook, toc_entries  # noqa: E402  (the repository's root conftest.py)


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"course_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


slides = load_tool("slides")
notebooks = load_tool("notebooks")

# --------------------------------------------------------------------------- the rule

PAGE = """<html><head>
<script>window.MathJax = {"tex": {"macros": {"E": "\\\\mathbb{E}"}}}</script>
<script defer="defer" src="../_static/../_vendor/mathjax/tex-chtml.js"></script>
<script src="https://example.org/not-copied.js"></script>
</head><body><article class="bd-article">
<section id="chapter" class="tex2jax_ignore mathjax_ignore">
<h1>A chapter<a class="headerlink" href="#chapter">#</a></h1>
<div class="admonition tip"><p class="admonition-title">Learning objectives</p><p>Learn.</p></div>
<section id="first"><h2>First<a class="headerlink" href="#first">#</a></h2>
<p>See <a href="#second">below</a> and <a href="other.html#x">elsewhere</a>.</p>
<div class="cell docutils container"><div class="cell_input"><pre>visible_input()</pre></div>
<div class="cell_output"><img src="../_images/fig.png"></div></div>
<div class="cell tag_hide-input docutils container"><details class="hide above-input"><summary>Show</summary>
<div class="cell_input"><pre>plotting_code()</pre></div></details>
<div class="cell_output"><img src="../_images/fig2.png"></div></div>
<div class="cell tag_remove-slide docutils container"><div class="cell_input"><pre>book_only()</pre></div></div>
</section>
<section id="second"><h2>Second</h2>
<section id="second-a"><h3>Part a</h3><div class="math notranslate nohighlight" id="equation-x">
<span class="eqno">(1)<a class="headerlink" href="#equation-x">#</a></span>\\[x\\]</div></section>
<section id="second-b"><h3>Part b</h3><p>b text</p></section>
</section>
<section id="exercises"><h2>Exercises</h2>
<div class="exercise admonition" id="ex-1"><p class="admonition-title">Exercise 1</p><p>Do it.</p></div>
<div class="solution dropdown admonition" id="sol-1"><p class="admonition-title">Solution to Exercise 1</p>
<section id="solution-content"><p>secret answer</p><div class="cell docutils container">
<div class="cell_input"><pre>secret_code()</pre></div></div></section></div>
</section>
</section>
</article></body></html>
"""


@pytest.fixture
def deck(tmp_path):
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "ch.html").write_text(PAGE)
    reveal = tmp_path / "_vendor" / "reveal.js" / "dist"
    reveal.mkdir(parents=True)
    (reveal / "reveal.js").write_text("")
    html = slides.build_deck(tmp_path / "book" / "ch.html", tmp_path / "slides" / "book" / "ch.html", tmp_path)
    return BeautifulSoup(html, "html.parser")


def horizontal(soup):
    return soup.select_one("div.slides").find_all("section", recursive=False)


def test_a_title_slide_then_one_slide_per_h2_and_one_sub_slide_per_h3(deck):
    top = horizontal(deck)
    assert [s.find(["h1", "h2"]).get_text(strip=True) for s in top] == ["A chapter", "First", "Second", "Exercises"]
    assert "Learning objectives" in top[0].get_text()
    stack = top[2].find_all("section", recursive=False)
    assert [s.find("h3").get_text(strip=True) for s in stack] == ["Part a", "Part b"]
    assert stack[0].find("h2") is not None                # the h2 heads its first sub-slide
    assert stack[1].select_one("p.kicker").get_text() == "Second"


def test_book_only_content_never_reaches_a_slide(deck):
    text = deck.get_text()
    assert "secret" not in text and "Solution to" not in text      # solutions
    assert "book_only" not in text                                 # tag remove-slide
    assert "plotting_code" not in text                             # tag hide-input: output only
    assert "visible_input" in text and "Do it." in text
    assert len(deck.select("img")) == 2
    assert not deck.select("a.headerlink, details, summary")


def test_urls_point_to_the_site_and_mathjax_is_the_local_one(deck):
    assert [img["src"] for img in deck.select("img")] == ["../../_images/fig.png", "../../_images/fig2.png"]
    links = [a["href"] for a in deck.select("a")]
    assert "../../book/ch.html#second" in links and "../../book/other.html#x" in links
    assert "../../book/ch.html" in links                   # "the chapter" (on the site)
    sources = [s.get("src") for s in deck.find_all("script") if s.get("src")]
    assert "../../_vendor/mathjax/tex-chtml.js" in sources
    assert "../../_vendor/reveal.js/dist/reveal.js" in sources
    assert not any(src.startswith("http") for src in sources)
    assert any("MathJax" in (s.string or "") for s in deck.find_all("script"))
    # myst-nb's classes travel with every slide, so MathJax treats a deck like the page
    assert all("mathjax_ignore" in s["class"] for s in horizontal(deck))


def test_paragraphs_go_to_the_notes_and_the_rest_stays_on_the_slide(deck):
    first = horizontal(deck)[1]
    notes = first.select_one("aside.notes")
    assert notes is not None and "See" in notes.get_text() and notes.find("a")
    shown = [c for c in first.children if getattr(c, "name", None) and c.name != "aside"]
    assert not any(c.name == "p" and "See" in c.get_text() for c in shown)
    assert first.select("div.cell_output img")                     # figures stay
    second_a = horizontal(deck)[2].find_all("section", recursive=False)[0]
    assert second_a.select_one("div.math") and not second_a.select_one("aside.notes div.math")
    assert horizontal(deck)[3].select_one("div.exercise")          # exercises stay
    assert "ch.pdf" in [a["href"] for a in deck.select("a.handout-link")]


def test_long_code_is_folded_and_long_sections_continue():
    soup = BeautifulSoup("<pre>" + "".join(f"line{i}\n" for i in range(30)) + "</pre>", "html.parser")
    slides._fold_pre(soup, soup.pre)
    text = soup.pre.get_text()
    keep = slides.FOLD_LINES                                        # the first FOLD_LINES lines stay
    assert f"line{keep - 1}\n" in text and f"line{keep}\n" not in text
    assert f"({30 - keep} more lines in the chapter)" in text
    short = BeautifulSoup("<pre>a\nb\n</pre>", "html.parser")
    slides._fold_pre(short, short.pre)
    assert short.pre.get_text() == "a\nb\n"
    items = "".join(f"<li>{'word ' * 15}</li>" for _ in range(6))     # 90 words: stays on the slide
    page = BeautifulSoup(f"<section><h2>Long</h2><p>{'talk ' * 200}</p><ul>{items}</ul><ul>{items}</ul>"
                         f"<ol><li>{'long ' * 101}</li></ol>"
                         "<div class='admonition key-points dropdown'><p class='admonition-title'>Key points</p>"
                         "<ul><li>one</li></ul></div></section>", "html.parser")
    parts = slides._paginated(page, list(page.section.children), "long", "Long", Path("."))
    assert len(parts) > 1 and parts[1].select_one("p.kicker").get_text() == "Long (continued)"
    assert all(slides.prose_words(p) <= slides.MAX_PROSE_WORDS for p in parts)
    assert parts[0].select_one("aside.notes").get_text().count("talk") == 200
    assert "long" in parts[-1].select_one("aside.notes").get_text()     # a list over 100 words
    kept = [p.select_one("div.key-points") for p in parts if p.select_one("div.key-points")]
    assert kept and "dropdown" not in kept[0]["class"]


def test_prose_words_leave_out_code_math_tables_and_notes():
    soup = BeautifulSoup("<section><h2>Two words</h2><p>three more words <code>not counted</code> "
                         "<span class='math'>\\(x + y\\)</span></p><pre>code here</pre>"
                         "<table><tr><td>cell words</td></tr></table>"
                         "<aside class='notes'>many notes words</aside></section>", "html.parser")
    assert slides.prose_words(soup.section) == 5


# ------------------------------------------------------------------ the built decks

def toc_chapters() -> list[str]:
    """The docnames of the notebooks in _toc.yml, in reading order."""
    return [path.relative_to(BOOK).with_suffix("").as_posix()
            for path in toc_entries(TOC) if path.is_file() and is_notebook(path)]


FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})")


def headings(cells) -> list[tuple[int, str]]:
    """(level, text) of the ## and ### headings of the markdown cells, outside fenced blocks."""
    found, fence = [], None
    for cell in cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            m = FENCE.match(line)
            if fence is None and m:
                fence = m.group(1)
            elif fence is not None and m and line.strip() == fence[0] * len(line.strip()) \
                    and len(line.strip()) >= len(fence):
                fence = None
            elif fence is None and (h := re.match(r"^(##|###) (.+)$", line)):
                found.append((len(h.group(1)), h.group(2).strip()))
    return found


def normalized(text: str) -> str:
    return " ".join(text.split())


def solution_and_check_cells(cells) -> tuple[list[str], list[str]]:
    """Sources of the code cells inside solutions, and of the code cells tagged remove-cell."""
    stripper, solutions, checks = notebooks.SolutionStripper(), [], []
    for cell in cells:
        if cell.cell_type == "markdown":
            stripper.lines(cell.source)
        elif stripper.inside:
            solutions.append(cell.source)
        elif "remove-cell" in cell.metadata.get("tags", []):
            checks.append(cell.source)
    return solutions, checks


site_test = pytest.mark.site


@site_test
@pytest.mark.parametrize("name", toc_chapters())
def test_chapter_deck_follows_its_source(name):
    page, deck_path = SITE / f"{name}.html", SITE / "slides" / f"{name}.html"
    if not page.is_file():
        pytest.skip(f"no built site in {SITE}: run `make book` first (make site-test does)")
    assert deck_path.is_file(), f"{deck_path} missing: make book builds the decks"
    built = slides.build_deck(page, deck_path, SITE)
    assert deck_path.read_text(encoding="utf-8") == built, f"{deck_path} is stale: run make slides"
    deck = BeautifulSoup(built, "html.parser")
    cells = jupytext.read(BOOK / f"{name}.md").cells

    # Structure: title slide, one slide per ##, one sub-slide per ### (+1 if the ## has text of its own).
    wanted = headings(cells)
    top = horizontal(deck)
    n_h2 = sum(level == 2 for level, _ in wanted)
    assert len(top) == 1 + n_h2, f"{name}: {len(top)} slides for {n_h2} ## sections"
    assert len(deck.find_all("h2")) == n_h2
    assert len(deck.find_all("h3")) == sum(level == 3 for level, _ in wanted)
    page_soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    article = page_soup.select_one("article.bd-article")
    page_h2 = [h.get_text(" ", strip=True).rstrip("#").strip() for h in article.find_all("h2")
               if not h.find_parent(class_="solution")]
    assert [h.get_text(" ", strip=True) for h in deck.find_all("h2")] == page_h2

    # Executed figures are there; check cells and solutions are not.
    for node in article.select(".solution, div.tag_remove-slide"):
        node.decompose()
    assert len(deck.select("div.cell_output img")) == len(article.select("div.cell_output img"))
    text = normalized(deck.get_text(" "))
    solutions, checks = solution_and_check_cells(cells)
    assert not deck.select(".solution") and "Solution to" not in text
    for source in solutions + checks:
        if len(normalized(source)) >= 20:
            assert normalized(source) not in text, f"{name}: hidden cell on a slide:\n{source}"


def _paragraph_texts(section) -> list[str]:
    """The paragraphs of a page's section (and its #### parts), outside lists and admonitions."""
    found = []
    for child in section.children:
        if getattr(child, "name", None) == "p" and not child.find("img"):
            found.append(normalized(child.get_text(" ")))
        elif getattr(child, "name", None) == "section" and not child.find(["h2", "h3"], recursive=False):
            found += _paragraph_texts(child)
    return [t for t in found if t]


@site_test
@pytest.mark.parametrize("name", toc_chapters())
def test_paragraphs_are_in_the_speaker_notes(name):
    page, deck_path = SITE / f"{name}.html", SITE / "slides" / f"{name}.html"
    if not deck_path.is_file():
        pytest.skip(f"no built site in {SITE}: run `make book` first (make site-test does)")
    article = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").select_one("article.bd-article")
    for node in article.select(".solution, a.headerlink"):
        node.decompose()
    deck = BeautifulSoup(deck_path.read_text(encoding="utf-8"), "html.parser")
    slides_by_id = {s["id"]: s for s in deck.select("div.slides section[id]")}
    for section in article.select("section[id]"):
        if not section.find(["h2", "h3"], recursive=False):
            continue
        paragraphs = _paragraph_texts(section)
        if not paragraphs:
            continue
        # (the first ### of a ## with nothing of its own shares the ##'s slide and id)
        slide = slides_by_id.get(section["id"]) or slides_by_id.get(section.find_parent("section").get("id"))
        assert slide is not None, f"{name}: no slide for section #{section['id']}"
        # the section's slide and its continuation slides (no id of their own)
        run, sibling = [slide], slide.find_next_sibling("section")
        while sibling is not None and not sibling.get("id"):
            run.append(sibling)
            sibling = sibling.find_next_sibling("section")
        notes = normalized(" ".join(a.get_text(" ") for s in run for a in s.select("aside.notes")))
        missing = [p[:60] for p in paragraphs if p not in notes]
        assert not missing, f"{name}: #{section['id']} lost paragraphs that are not in its notes: {missing}"


@site_test
@pytest.mark.parametrize("name", toc_chapters())
def test_handout_has_every_slide_and_the_notes(name):
    pypdf = pytest.importorskip("pypdf")
    deck_path = SITE / "slides" / f"{name}.html"
    if not deck_path.is_file():
        pytest.skip(f"no built site in {SITE}: run `make book` first (make site-test does)")
    handout = slides.handout_path(deck_path)
    assert handout.is_file(), f"{handout} missing: make book prints it (tools/slides.py --handouts)"
    deck = BeautifulSoup(deck_path.read_text(encoding="utf-8"), "html.parser")
    assert deck.select_one(f'a.handout-link[href="{handout.name}"]'), f"{name}: the deck does not link its handout"
    reader = pypdf.PdfReader(handout)
    assert len(reader.pages) >= len(horizontal(deck)), \
        f"{name}: {len(reader.pages)} handout pages for {len(horizontal(deck))} slides"
    text = normalized(" ".join(p.extract_text() or "" for p in reader.pages))
    words = lambda t: re.findall(r"[A-Za-z]{4,}", t)  # noqa: E731  (PDF text breaks lines and hyphens)
    pdf_words = set(words(text))
    for aside in deck.select("aside.notes"):
        note = words(aside.get_text(" "))[:12]
        missing = [w for w in note if w not in pdf_words]
        assert len(missing) <= len(note) // 4, f"{name}: handout lacks the notes {note}: missing {missing}"
