"""Build a reveal.js slide deck, and its printed handout, for every chapter of the built site.

Usage: ``python tools/slides.py [_build/html] [--handouts]`` (``make slides``; ``make book``
runs it with ``--handouts``).

The decks are made from the chapter pages the book build has just written, so they
show exactly the executed outputs, numbers and equations of the page: nothing runs
twice, and everything MyST resolves (glue, citations, equation numbers,
``literalinclude``, admonitions, exercises) looks as it does on the site. (nbconvert's
slide exporter, working from the notebook, would show MyST directives as raw text.)

The rule authors follow (README.md, "Slides"):

* the chapter title ``#`` and what precedes the first ``##`` (the learning
  objectives) make the title slide;
* each ``##`` section starts a slide; each ``###`` sub-section inside it is a
  sub-slide below it (reveal.js: press the down arrow); deeper levels stay on their
  ``###`` slide;
* what the room sees: lists, figures, displayed equations, tables, code cells and
  their outputs, exercises, the learning objectives and the admonitions of class
  ``key-points`` (closed dropdowns on the page, shown open on the slide). The
  paragraphs, block quotes and every other admonition move into the slide's speaker
  notes (``<aside class="notes">``; press ``S`` for the speaker view), in order,
  beside the first thing shown after them; their inline math stays as TeX there
  (the speaker view has no MathJax). A list longer than ``LIST_WORDS`` words is cut
  into parts;
* long code is folded to what the section explains: a code block (a cell's input or
  text output, or a ``literalinclude``) longer than ``FOLD_LINES + 2`` lines shows its
  first ``FOLD_LINES`` lines and a line saying how many more the chapter has (tag a
  cell ``hide-slide-input`` to show only its output, or ``remove-slide`` to leave it
  out of the deck);
* nothing scrolls: a slide whose estimated height passes ``HEIGHT_BUDGET`` pixels of
  the 1280x720 slide, or whose prose passes ``MAX_PROSE_WORDS`` words, continues on
  a sub-slide headed "(continued)"; a figure cell too tall for what is left of its slide
  folds its input to 5 lines (a widget's cell shows no input) and its figure shrinks to
  fit (``make site-test`` measures every slide in Chromium);
* code cells show their input and output; a cell tagged ``hide-input``,
  ``remove-input`` or ``hide-slide-input`` shows only its output, and one tagged
  ``remove-slide`` is left out of the deck; ``remove-cell`` cells (check cells) are
  not on the page, so not on the slides either;
* solutions (sphinx-exercise ``solution``, gated or not) never appear; exercises do.

Prose words (``NOT_PROSE``, ``prose_words`` and ``SLIDE_STATS_JS``, one definition for
the build, the site test and any measurement): the words of a slide outside code, math,
tables and the speaker notes, headings included.

A deck is built for exactly the pages that link to one (the "slides" button that
``tools/course_site.py`` adds to every notebook page), into ``slides/<page>.html``.
It loads reveal.js (with its notes plugin, so the speaker view works offline) and
MathJax from ``_vendor/`` in the site (``make book`` copies them from
``vendor/node_modules``). With ``--handouts``, headless Chromium prints every deck with
its notes (reveal.js's ``?print-pdf&showNotes=separate-page``: each slide, then a page
of its notes) to ``slides/<page>.pdf``, which the deck's title slide links.
"""
from __future__ import annotations

import copy
import json
import math
import posixpath
import re
import struct
import sys
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag

SLIDES_DIR = "slides"
BUTTON = "a.btn-slides-button"
INPUT_HIDDEN_TAGS = ("tag_hide-input", "tag_remove-input", "tag_hide-slide-input")
SKIPPED_TAG = "tag_remove-slide"
REVEAL = "_vendor/reveal.js"
SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720
HEIGHT_BUDGET = 520          # estimated pixels of content on one slide (heading included; the
                             # estimate runs short by up to ~50 px on tables of citations)
IMAGE_MAX_HEIGHT = 470       # .reveal img's max-height (DECK_CSS)
MAX_PROSE_WORDS = 100        # prose words on one slide before it continues on the next
LIST_WORDS = 100             # a list longer than this goes to the notes
FOLD_LINES = 10              # a code block keeps this many lines on a slide
KEEP_ADMONITIONS = ("key-points", "exercise")
# What is not prose on a slide (CSS selectors; the browser check uses the same string).
NOT_PROSE = "aside.notes, pre, code, div.math, span.math, span.tex, mjx-container, table, script, style"
WORD = re.compile(r"[A-Za-z0-9]")

# For a deck open in the browser: one entry per slide (as reveal.js finds them),
# with its prose words, its notes' words and its heights. Argument: NOT_PROSE.
SLIDE_STATS_JS = r"""(notProse) => {
  const words = el => {
    const c = el.cloneNode(true);
    c.querySelectorAll(notProse).forEach(n => n.remove());
    return c.textContent.split(/\s+/).filter(w => /[A-Za-z0-9]/.test(w)).length;
  };
  const slides = [...document.querySelectorAll('.reveal .slides > section')].flatMap(
    s => s.querySelector(':scope > section') ? [...s.querySelectorAll(':scope > section')] : [s]);
  const shown = slides.map(s => [s, s.style.display]);
  slides.forEach(s => { s.style.display = 'block'; if (s.parentElement.tagName === 'SECTION') s.parentElement.style.display = 'block'; });
  const stats = slides.map((s, i) => {
    const notes = s.querySelector('aside.notes');
    const head = s.querySelector('h1, h2, h3, p.kicker');
    return {index: i, id: s.id || null, title: head ? head.textContent.trim() : '',
            words: words(s), notes: notes ? words(notes) : 0,
            scrollHeight: s.scrollHeight, clientHeight: s.clientHeight};
  });
  shown.forEach(([s, d]) => { s.style.display = d; });
  if (window.Reveal && Reveal.isReady()) Reveal.layout();
  return stats;
}"""


DECK_CSS = """
.reveal { font-size: 28px; }
.reveal .slides { text-align: left; }
.reveal .slides section { height: 100%; overflow-y: auto; box-sizing: border-box; padding: 0 0.4em 0.6em 0; }
.reveal .slides > section.stack { overflow: visible; padding: 0; }
.reveal h1 { font-size: 1.8em; text-transform: none; }
.reveal h2 { font-size: 1.4em; text-transform: none; margin-bottom: 0.4em; }
.reveal h3 { font-size: 1.15em; text-transform: none; margin-bottom: 0.4em; }
.reveal h4, .reveal h5 { font-size: 1em; text-transform: none; }
.reveal p.kicker { font-size: 0.7em; color: #595959; margin: 0 0 0.2em 0; text-transform: uppercase; letter-spacing: 0.04em; }
.reveal p, .reveal li { line-height: 1.3; }
.reveal ul, .reveal ol { display: block; margin-left: 1.2em; }
.reveal li + li { margin-top: 0.15em; }
.reveal img { max-height: IMAGE_MAX_HEIGHTpx; max-width: 100%; margin: 0.3em auto; display: block; object-fit: contain; }
.reveal pre { width: 100%; font-size: 0.55em; line-height: 1.25; box-shadow: none; margin: 0.3em 0; }
.reveal pre code, .reveal .highlight pre { max-height: none; overflow: hidden; padding: 0.4em; background: #f6f8fa; }
.reveal pre .fold { color: #595959; font-style: italic; }
.reveal code { font-size: 0.9em; }
.reveal .cell_input { border-left: 3px solid #4c8be2; }
.reveal .cell_output pre { background: #fff; border-left: 3px solid #ccc; }
.reveal .admonition { border-left: 5px solid #4c8be2; background: #f3f7fd; padding: 0.3em 0.8em; margin: 0.5em 0; font-size: 0.9em; }
.reveal .admonition.exercise { border-color: #e8a33d; background: #fdf7ee; }
.reveal .admonition.key-points { border-color: #2e8540; background: #f1f8f3; }
.reveal .admonition.warning, .reveal .admonition.caution, .reveal .admonition.danger { border-color: #d9534f; background: #fdf1f1; }
.reveal .admonition-title { font-weight: bold; margin: 0.2em 0; }
.reveal table { font-size: 0.7em; margin: 0.4em 0; border-collapse: collapse; }
.reveal table th, .reveal table td { border-bottom: 1px solid #ddd; padding: 0.15em 0.5em; }
.reveal div.math { font-size: 0.95em; margin: 0.3em 0; }
.reveal span.eqno { float: right; }
.reveal .chapter-link { font-size: 0.6em; color: #595959; }
.reveal .citation, .reveal .footnote { font-size: 0.6em; }
.reveal a { color: #1f5fae; }
.reveal aside.notes { display: none; }
.reveal .slide-number { background: #333; color: #fff; }
""".replace("IMAGE_MAX_HEIGHT", str(IMAGE_MAX_HEIGHT))

TEMPLATE = """<!doctype html>
<html lang="en" data-theme="light">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} (slides)</title>
<link rel="stylesheet" href="{root}{reveal}/dist/reveal.css">
<link rel="stylesheet" href="{root}{reveal}/dist/theme/white.css">
<link rel="stylesheet" href="{root}_static/pygments.css">
<style>{css}</style>
{head_scripts}
</head>
<body>
<main class="reveal" aria-label="{title} (slides)"><div class="slides">
{slides}
</div></main>
<script src="{root}{reveal}/dist/reveal.js"></script>
<script src="{root}{reveal}/dist/plugin/notes.js"></script>
<script>
Reveal.initialize({{hash: true, slideNumber: "c/t", center: false, width: {width}, height: {height},
                    margin: 0.04, transition: "none", plugins: [RevealNotes]}});
</script>
{body_scripts}
</body>
</html>
"""


def decks_to_build(site: Path) -> dict[Path, Path]:
    """Map every page with a slides button to the deck it links to."""
    decks = {}
    for page in sorted(site.rglob("*.html")):
        rel = page.relative_to(site)
        if rel.parts[0] in {SLIDES_DIR, "_static", "_vendor", "_sources", "_modules"}:
            continue
        text = page.read_text(encoding="utf-8", errors="replace")
        if "btn-slides-button" not in text:
            continue
        link = BeautifulSoup(text, "html.parser").select_one(BUTTON)
        if link is not None:
            decks[page] = (page.parent / link["href"]).resolve()
    return decks


def _site_relative(url: str, page: Path, site: Path) -> str | None:
    """A relative URL on `page`, as a path from the site root (None for external URLs)."""
    if not url or url.startswith(("http:", "https:", "//", "mailto:", "data:", "javascript:")):
        return None
    page_dir = page.parent.relative_to(site).as_posix()
    return posixpath.normpath(posixpath.join(page_dir, url))


def _relocate(url: str, page: Path, deck: Path, site: Path) -> str:
    """Rewrite a URL of `page` so that it points to the same target from `deck`."""
    if url.startswith("#"):
        url = page.name + url
    target = _site_relative(url, page, site)
    if target is None:
        return url
    deck_dir = deck.parent.relative_to(site).as_posix()
    return posixpath.relpath(target, deck_dir) if not target.startswith("#") else target


def _is_blank(node) -> bool:
    if isinstance(node, NavigableString):
        return not node.strip()
    return node.name == "span" and not node.get_text(strip=True) and not node.find(["img", "script"])


def clean(top: Tag) -> None:
    """Remove what a slide must not show."""
    for node in top.select("div.solution, .solution, a.headerlink, button"):
        node.decompose()
    # a reference list's entries hold backlinks, which role=list may not (axe-core)
    for node in top.select(".citation-list[role=list]"):
        del node["role"]
    for cell in top.select("div.cell"):
        classes = set(cell.get("class", []))
        if SKIPPED_TAG in classes:
            cell.decompose()
            continue
        if classes & set(INPUT_HIDDEN_TAGS):
            for node in cell.select("div.cell_input"):
                wrapper = node.find_parent("details")
                (wrapper if wrapper is not None and cell in wrapper.parents else node).decompose()
    # hide-output / dropdown wrappers: on a slide the content is shown, without the toggle
    for details in top.select("details"):
        for summary in details.find_all("summary", recursive=False):
            summary.decompose()
        details.unwrap()


def relocate_urls(top: Tag, page: Path, deck: Path, site: Path) -> None:
    for tag, attr in (("a", "href"), ("img", "src"), ("source", "src"), ("video", "src")):
        for node in top.find_all(tag):
            if node.get(attr):
                node[attr] = _relocate(node[attr], page, deck, site)
                if tag == "a":
                    node["target"] = "_blank"   # keep the deck open while a link is followed


def _slide(soup: BeautifulSoup, children: list, section_id: str | None = None, classes=()) -> Tag:
    slide = soup.new_tag("section")
    if section_id:
        slide["id"] = section_id
    if classes:
        slide["class"] = list(classes)
    for child in children:
        slide.append(child.extract() if hasattr(child, "extract") else child)
    return slide


def prose_words(node) -> int:
    """Words of `node` outside code, math, tables and notes (NOT_PROSE)."""
    if isinstance(node, NavigableString):
        return sum(1 for w in str(node).split() if WORD.search(w))
    node = copy.copy(node)
    for inner in node.select(NOT_PROSE):
        inner.decompose()
    return sum(1 for w in node.get_text(" ").split() if WORD.search(w))


def _classes(node) -> set[str]:
    return set(node.get("class", [])) if isinstance(node, Tag) else set()


def _flatten(nodes: list) -> list:
    """Deeper sections (####) stay on their slide: their content joins the slide's."""
    out = []
    for node in nodes:
        if isinstance(node, Tag) and node.name == "section":
            out += _flatten(list(node.children))
        else:
            out.append(node)
    return out


def _on_slide(node) -> bool:
    """Whether a node is shown on the slide (True) or goes to the speaker notes (False)."""
    if isinstance(node, NavigableString):
        return False
    classes = _classes(node)
    if node.name == "p":
        return node.find("img") is not None or "rubric" in classes
    if node.name == "blockquote":
        return False
    if node.name in ("ul", "ol", "dl"):
        return prose_words(node) <= LIST_WORDS
    if "admonition" in classes:
        title = node.select_one(".admonition-title")
        if classes & set(KEEP_ADMONITIONS) or (title and title.get_text(strip=True).startswith("Learning objectives")):
            return True
        return node.select_one("img, div.cell, div.math, table") is not None
    return True


def _fold_pre(soup: BeautifulSoup, pre: Tag, keep: int = FOLD_LINES, refold: bool = False) -> None:
    """Keep the first `keep` lines of a code block, and say how many more there are."""
    old = pre.select_one("span.fold")
    hidden = int(re.search(r"\d+", old.get_text()).group()) if old else 0
    if old:
        old.decompose()
    lines = pre.get_text().rstrip("\n").split("\n")
    if len(lines) <= keep + 2 - 2 * refold:
        if old:
            pre.append(old)
        return
    hidden += len(lines) - keep
    count = 0
    for string in [d for d in pre.descendants if isinstance(d, NavigableString)]:
        if count >= keep:
            string.replace_with("")
            continue
        newlines = string.count("\n")
        if count + newlines >= keep:
            cut = -1
            for _ in range(keep - count):
                cut = string.index("\n", cut + 1)
            string.replace_with(string[:cut + 1])
            count = keep
        else:
            count += newlines
    fold = soup.new_tag("span", attrs={"class": "fold"})
    fold.string = f"... ({hidden} more lines in the chapter)\n"
    pre.append(fold)


def _notes_math_as_tex(node: Tag) -> None:
    """The speaker view has no MathJax: inline math in the notes stays TeX, untouched by it."""
    for math_node in node.select("span.math, div.math"):
        math_node["class"] = ["tex"]


def _png_size(path: Path) -> tuple[int, int] | None:
    try:
        with path.open("rb") as f:
            head = f.read(24)
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def _image_height(img: Tag, folder: Path) -> float:
    """The height of an image on the slide, from its file's size and DECK_CSS's limits."""
    size = _png_size(folder / img.get("src", "").split("?")[0]) if img.get("src") else None
    if size is None:
        return IMAGE_MAX_HEIGHT
    width, height = size
    return min(IMAGE_MAX_HEIGHT, height * min(1.0, (SLIDE_WIDTH - 60) / max(width, 1))) + 14


TEXT_LINE, CODE_LINE, CHARS_PER_LINE = 36, 19, 78


def _height(node, folder: Path) -> float:
    """An estimate of the height of `node` on a slide, in pixels (SLIDE_WIDTH wide)."""
    if isinstance(node, NavigableString):
        return 0.0
    if node.name in ("h1", "h2", "h3", "h4", "h5", "h6"):
        return {"h1": 100, "h2": 70, "h3": 58}.get(node.name, 44)
    height = 0.0
    for img in ([node] if node.name == "img" else node.find_all("img")):
        height += _image_height(img, folder)
    for pre in node.find_all("pre"):
        height += CODE_LINE * (pre.get_text().rstrip("\n").count("\n") + 1) + 22
    for display in node.select("div.math"):
        tex = display.get_text()
        height += 46 * (tex.count("\\\\") + 1) + 20 + 30 * ("\\frac" in tex or "\\sum" in tex)
    for row in ([node] if node.name == "tr" else node.find_all("tr")):
        cells = row.find_all(["td", "th"], recursive=False) or [row]
        per_line = max(8, (SLIDE_WIDTH - 60) / len(cells) / 11)
        height += 26 * max(math.ceil(len(" ".join(c.get_text(" ").split())) / per_line) for c in cells) + 8
    if node.select_one(".jupyter-widgets, script[type='application/vnd.jupyter.widget-view+json']"):
        height += 420
    text = copy.copy(node)
    for inner in text.select("pre, div.math, table, img, script, style, tr"):
        inner.decompose()
    blocks = text.find_all(["p", "li", "dt", "dd"]) or ([text] if text.name != "tr" and text.get_text(strip=True) else [])
    for block in blocks:
        if block.find(["p", "li"]):
            continue
        chars = len(" ".join(block.get_text(" ").split()))
        height += TEXT_LINE * math.ceil(chars / CHARS_PER_LINE) + 8
    if "admonition" in _classes(node):
        height += 30
    return height + 12


def _fit_images(node: Tag, too_tall_by: float) -> None:
    """Shrink the images of `node` so that it is `too_tall_by` pixels shorter."""
    images = node.find_all("img") if node.name != "img" else [node]
    if not images or too_tall_by <= 0:
        return
    for img in images:
        img["style"] = f"max-height: {max(160, IMAGE_MAX_HEIGHT - too_tall_by / len(images)):.0f}px"


def _items(node: Tag) -> tuple[str, str] | None:
    """(container selector, item selector) of a node that may be cut into parts, or None."""
    classes = _classes(node)
    if node.name in ("ul", "ol"):
        return ":scope", ":scope > li"
    if node.select_one("div.citation-list"):
        return "div.citation-list", ":scope > div.citation"
    if (node.name == "table" or "pst-scrollable-table-container" in classes) \
            and node.select_one("table > tbody") and not node.select_one("table table"):
        return "table > tbody", ":scope > tr"
    if "admonition" in classes and node.select(":scope > ul, :scope > ol"):
        return ":scope > ul, :scope > ol", ":scope > li"
    return None


def _parts(node, folder: Path, room: float = HEIGHT_BUDGET - 40,
           words: int = MAX_PROSE_WORDS - 10) -> list:
    """`node`, cut between its items (list items, references, table rows) into parts that fit."""
    where = _items(node) if isinstance(node, Tag) else None
    if where is None or (_height(node, folder) <= room and prose_words(node) <= words):
        return [node]
    container, item = where
    items = node.select_one(container).select(item)
    fixed = _height(node, folder) - sum(_height(i, folder) for i in items)
    groups, current, height, count = [], [], fixed, 0
    for i, it in enumerate(items):
        h, w = _height(it, folder), prose_words(it)
        if current and (height + h > room or count + w > words):
            groups.append(current)
            current, height, count = [], fixed, 0
        current.append(i)
        height += h
        count += w
    groups.append(current)
    if len(groups) == 1:
        return [node]
    parts = []
    for k, group in enumerate(groups):
        part = copy.copy(node)
        box = part.select_one(container)
        for i, it in enumerate(box.select(item)):
            if i not in group:
                it.decompose()
        if box.name == "ol" and group[0] > 0:
            box["start"] = str(int(box.get("start", 1)) + group[0])
        if k > 0:
            for tagged in [part] + part.find_all(id=True):
                if tagged.get("id") and not tagged.find_parent(class_=["citation"]) and "citation" not in _classes(tagged):
                    del tagged["id"]
        parts.append(part)
    return parts


def _kicker(soup: BeautifulSoup, text: str) -> Tag:
    kicker = soup.new_tag("p", attrs={"class": "kicker"})
    kicker.string = text
    return kicker


def _notes(soup: BeautifulSoup, nodes: list) -> Tag:
    aside = soup.new_tag("aside", attrs={"class": "notes"})
    for node in nodes:
        node = node.extract()
        if isinstance(node, Tag):
            _notes_math_as_tex(node)
        aside.append(node)
    return aside


def _paginated(soup: BeautifulSoup, nodes: list, section_id: str | None, title: str,
               folder: Path, kicker: str | None = None, extra: list | None = None) -> list[Tag]:
    """The slides of one section: what is shown, split so that each fits, with the notes."""
    chunks = [{"shown": [], "notes": [], "height": 0.0, "words": 0, "content": False}]
    if kicker:
        chunks[0]["shown"].append(_kicker(soup, kicker))
        chunks[0]["height"] += 30
    pending = []                      # paragraphs waiting for the next shown node
    for node in _flatten(nodes):
        if isinstance(node, NavigableString) and not node.strip():
            continue
        if _is_blank(node):
            chunks[-1]["shown"].append(node)
            continue
        if not _on_slide(node):
            pending.append(node)
            continue
        for pre in ([node] if node.name == "pre" else node.find_all("pre")):
            _fold_pre(soup, pre)
        if "admonition" in _classes(node):
            node["class"] = [c for c in node["class"] if c != "dropdown"]
        for part in _parts(node, folder):
            height, words = _height(part, folder), prose_words(part)
            chunk = chunks[-1]
            heading = part.name in ("h1", "h2", "h3", "h4", "h5", "h6")
            if chunk["content"] and (chunk["height"] + height > HEIGHT_BUDGET
                                     or chunk["words"] + words > MAX_PROSE_WORDS):
                carried = []
                while chunk["shown"] and isinstance(chunk["shown"][-1], Tag) \
                        and chunk["shown"][-1].name in ("h4", "h5", "h6"):
                    carried.insert(0, chunk["shown"].pop())      # a heading goes with what follows
                chunk = {"shown": [_kicker(soup, f"{title} (continued)")] + carried, "notes": [],
                         "height": 30 + sum(_height(c, folder) for c in carried),
                         "words": sum(prose_words(c) for c in carried), "content": False}
                chunks.append(chunk)
            if chunk["height"] + height > HEIGHT_BUDGET and isinstance(part, Tag) \
                    and part.select_one("img, script[type='application/vnd.jupyter.widget-view+json']"):
                for pre in part.select("div.cell_input pre"):
                    _fold_pre(soup, pre, keep=5, refold=True)
                if part.select_one("script[type='application/vnd.jupyter.widget-view+json']"):
                    for cell_input in part.select("div.cell_input"):      # a widget: its controls
                        cell_input.decompose()
                height = _height(part, folder)
            if chunk["height"] + height > HEIGHT_BUDGET and isinstance(part, Tag):
                _fit_images(part, chunk["height"] + height - HEIGHT_BUDGET)
                height = HEIGHT_BUDGET - chunk["height"]
            chunk["notes"] += pending
            pending = []
            chunk["shown"].append(part)
            chunk["height"] += height
            chunk["words"] += words
            chunk["content"] = chunk["content"] or not heading
    chunks[-1]["notes"] += pending
    if extra:
        chunks[0]["shown"] += extra
    slides = []
    for i, chunk in enumerate(chunks):
        children = chunk["shown"] + ([_notes(soup, chunk["notes"])] if chunk["notes"] else [])
        slides.append(_slide(soup, children, section_id if i == 0 else None))
    return slides


def split(soup: BeautifulSoup, top: Tag, chapter_link: str, folder: Path,
          handout: str | None = None) -> list[Tag]:
    """Slides from the page's section tree: h1 (title), h2 (slides), h3 (sub-slides)."""
    children = list(top.children)
    subsections = [c for c in children if isinstance(c, Tag) and c.name == "section"]
    intro = [c for c in children if not (isinstance(c, Tag) and c.name == "section")]
    link = soup.new_tag("p", attrs={"class": "chapter-link"})
    anchor = soup.new_tag("a", href=chapter_link, target="_blank")
    anchor.string = "The chapter"
    link.append(anchor)
    if handout:
        link.append(" \N{MIDDLE DOT} ")
        pdf = soup.new_tag("a", href=handout, target="_blank", attrs={"class": "handout-link"})
        pdf.string = "Handout with notes (PDF)"
        link.append(pdf)
    title_slides = _paginated(soup, intro, top.get("id"), "", folder, extra=[link])
    title_slides[0]["class"] = ["title-slide"]
    slides = [title_slides[0] if len(title_slides) == 1 else _slide(soup, title_slides, classes=["stack"])]
    for section in subsections:
        heading = section.find("h2", recursive=False)
        title = heading.get_text(" ", strip=True) if heading else ""
        parts = list(section.children)
        subs = [c for c in parts if isinstance(c, Tag) and c.name == "section"]
        own = [c for c in parts if not (isinstance(c, Tag) and c.name == "section")]
        stack = []
        has_own_content = any(not _is_blank(c) and c is not heading for c in own)
        if has_own_content or not subs:
            stack += _paginated(soup, own, section.get("id"), title, folder)
        for i, sub in enumerate(subs):
            sub_heading = sub.find("h3", recursive=False)
            sub_title = sub_heading.get_text(" ", strip=True) if sub_heading else title
            if i == 0 and not has_own_content:
                lead = [c for c in own if not _is_blank(c)]
                stack += _paginated(soup, lead + list(sub.children), section.get("id"), sub_title, folder)
            else:
                stack += _paginated(soup, list(sub.children), sub.get("id"), sub_title, folder, kicker=title)
        slides.append(stack[0] if len(stack) == 1 else _slide(soup, stack, classes=["stack"]))
    return slides


def _script_tags(soup: BeautifulSoup, page: Path, deck: Path, site: Path) -> tuple[str, str]:
    """The page's MathJax configuration and vendored scripts (MathJax, widgets), relocated."""
    head, body = [], []
    for script in soup.find_all("script"):
        src = script.get("src")
        if src is None:
            text = script.string or ""
            if "MathJax" in text:
                head.append(str(script))
            elif script.get("type") == "application/vnd.jupyter.widget-state+json":
                body.append(str(script))
            continue
        target = _site_relative(src.split("?")[0], page, site)
        if target is None or not target.startswith("_vendor/"):
            continue
        deck_dir = deck.parent.relative_to(site).as_posix()
        attrs = {k: v for k, v in script.attrs.items() if k != "src"}
        attrs["src"] = posixpath.relpath(target, deck_dir)
        if target.endswith("requirejs/require.js"):
            # Where the widget manager's modules (and so their fonts) live; see course_site.py.
            where = posixpath.relpath("_vendor/html-manager", deck_dir)
            paths = {"@jupyter-widgets": where, "@jupyter-widgets/html-manager/dist": where}
            body.append(f"<script>var require = {{paths: {json.dumps(paths)}}};</script>")
        rendered = "<script " + " ".join(
            f'{k}="{" ".join(v) if isinstance(v, list) else v}"' for k, v in attrs.items()) + "></script>"
        # MathJax goes in the head; the widget scripts (require.js defines `define`, which
        # would capture reveal.js's UMD module) go after reveal.js.
        (head if "mathjax" in target.lower() else body).append(rendered)
    return "\n".join(head), "\n".join(body)


def build_deck(page: Path, deck: Path, site: Path) -> str:
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    article = soup.select_one("article.bd-article") or soup.body
    top = article.find("section")
    if top is None:
        raise ValueError(f"{page}: no section found in the page's article")
    head_scripts, body_scripts = _script_tags(soup, page, deck, site)
    title = top.find("h1").get_text(" ", strip=True) if top.find("h1") else page.stem
    clean(top)
    relocate_urls(top, page, deck, site)
    chapter_link = posixpath.relpath(page.relative_to(site).as_posix(), deck.parent.relative_to(site).as_posix())
    slides = split(soup, top, chapter_link, deck.parent, handout=handout_path(deck).name)
    root = posixpath.relpath(".", deck.parent.relative_to(site).as_posix()) + "/"
    # Keep the page's classes (myst-nb's mathjax_ignore) on every slide: MathJax's
    # processing rules (processHtmlClass, ignoreHtmlClass) then apply as on the page.
    for slide in slides:
        slide["class"] = list(slide.get("class", [])) + list(top.get("class", []))
    body = "\n".join(str(s) for s in slides)
    return TEMPLATE.format(title=title, root=root, reveal=REVEAL, css=DECK_CSS, slides=body,
                           head_scripts=head_scripts, body_scripts=body_scripts,
                           width=SLIDE_WIDTH, height=SLIDE_HEIGHT)


def handout_path(deck: Path) -> Path:
    """Where the printed handout of a deck goes: beside it, ``slides/<page>.pdf``."""
    return deck.with_suffix(".pdf")


def print_handouts(site: Path, decks: list[Path]) -> None:
    """Print every deck with its speaker notes to its handout PDF, in headless Chromium."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from browser import offline_page, serve, wait_for_mathjax

    with serve(site) as base, offline_page(SLIDE_WIDTH, SLIDE_HEIGHT) as page:
        for deck in decks:
            url = f"{base}/{deck.relative_to(site).as_posix()}?print-pdf&showNotes=separate-page"
            page.goto(url, wait_until="load")
            page.wait_for_function("() => window.Reveal && Reveal.isReady()")
            wait_for_mathjax(page)
            page.wait_for_function("() => [...document.images].every(img => img.complete)")
            page.wait_for_timeout(500)          # reveal.js lays the pages out after MathJax
            page.pdf(path=str(handout_path(deck)), print_background=True, prefer_css_page_size=True)
            print(f"handout: {handout_path(deck).relative_to(site)}", flush=True)


def build_all(site: Path, handouts: bool = False) -> list[Path]:
    site = site.resolve()
    if not (site / REVEAL / "dist" / "reveal.js").is_file():
        raise SystemExit(f"{site / REVEAL}: reveal.js is missing; run `make book` (it copies vendor/)")
    built = []
    for page, deck in decks_to_build(site).items():
        deck.parent.mkdir(parents=True, exist_ok=True)
        deck.write_text(build_deck(page, deck, site), encoding="utf-8")
        built.append(deck)
    if handouts:
        print_handouts(site, built)
    return built


def main(argv: list[str]) -> int:
    args = [a for a in argv[1:] if not a.startswith("--")]
    site = Path(args[0] if args else "_build/html")
    built = build_all(site, handouts="--handouts" in argv[1:])
    for deck in built:
        print(f"slides: {deck.relative_to(site.resolve())}")
    print(json.dumps({"decks": len(built)}))
    return 0 if built else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
