"""Build a reveal.js slide deck for every chapter of the built site.

Usage: ``python tools/slides.py [_build/html]`` (``make slides``; ``make book`` runs it).

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
  ``###`` slide; a figure that follows more than a few lines of text moves to a
  continuation sub-slide, so that it is seen whole; a slide still too long scrolls;
* code cells show their input and output; a cell tagged ``hide-input``,
  ``remove-input`` or ``hide-slide-input`` shows only its output, and one tagged
  ``remove-slide`` is left out of the deck; ``remove-cell`` cells (check cells) are
  not on the page, so not on the slides either;
* solutions (sphinx-exercise ``solution``, gated or not) never appear; exercises do.

A deck is built for exactly the pages that link to one (the "slides" button that
``tools/course_site.py`` adds to every notebook page), into ``slides/<page>.html``.
It loads reveal.js and MathJax from ``_vendor/`` in the site (``make book`` copies
them from ``vendor/node_modules``), so it works offline.
"""
from __future__ import annotations

import json
import posixpath
import sys
from pathlib import Path

from bs4 import BeautifulSoup, NavigableString, Tag

SLIDES_DIR = "slides"
BUTTON = "a.btn-slides-button"
INPUT_HIDDEN_TAGS = ("tag_hide-input", "tag_remove-input", "tag_hide-slide-input")
SKIPPED_TAG = "tag_remove-slide"
REVEAL = "_vendor/reveal.js"
SPLIT_AFTER_CHARS = 600      # a figure after more text than this starts a continuation slide

DECK_CSS = """
.reveal { font-size: 30px; }
.reveal .slides { text-align: left; }
.reveal .slides section { height: 100%; overflow-y: auto; box-sizing: border-box; padding: 0 0.4em 1em 0; }
.reveal .slides > section.stack { overflow: visible; padding: 0; }
.reveal h1 { font-size: 1.9em; text-transform: none; }
.reveal h2 { font-size: 1.45em; text-transform: none; margin-bottom: 0.5em; }
.reveal h3 { font-size: 1.2em; text-transform: none; }
.reveal h4, .reveal h5 { font-size: 1em; text-transform: none; }
.reveal p.kicker { font-size: 0.7em; color: #777; margin: 0 0 0.2em 0; text-transform: uppercase; letter-spacing: 0.04em; }
.reveal p, .reveal li { line-height: 1.35; }
.reveal ul, .reveal ol { display: block; margin-left: 1.2em; }
.reveal img { max-height: 520px; max-width: 100%; margin: 0.3em auto; display: block; object-fit: contain; }
.reveal pre { width: 100%; font-size: 0.5em; box-shadow: none; margin: 0.4em 0; }
.reveal pre code, .reveal .highlight pre { max-height: 420px; overflow: auto; padding: 0.5em; background: #f6f8fa; }
.reveal code { font-size: 0.9em; }
.reveal .cell_input { border-left: 3px solid #4c8be2; }
.reveal .cell_output pre { background: #fff; border-left: 3px solid #ccc; }
.reveal .admonition { border-left: 5px solid #4c8be2; background: #f3f7fd; padding: 0.3em 0.8em; margin: 0.6em 0; font-size: 0.9em; }
.reveal .admonition.exercise { border-color: #e8a33d; background: #fdf7ee; }
.reveal .admonition.warning, .reveal .admonition.caution, .reveal .admonition.danger { border-color: #d9534f; background: #fdf1f1; }
.reveal .admonition-title { font-weight: bold; margin: 0.2em 0; }
.reveal table { font-size: 0.75em; margin: 0.5em 0; border-collapse: collapse; }
.reveal table th, .reveal table td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; }
.reveal div.math { font-size: 0.95em; }
.reveal span.eqno { float: right; }
.reveal .chapter-link { font-size: 0.6em; color: #777; }
.reveal .citation, .reveal .footnote { font-size: 0.6em; }
.reveal a { color: #2a6fc9; }
"""

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
<div class="reveal"><div class="slides">
{slides}
</div></div>
<script src="{root}{reveal}/dist/reveal.js"></script>
<script src="{root}{reveal}/dist/plugin/notes.js"></script>
<script>
Reveal.initialize({{hash: true, slideNumber: "c/t", center: false, width: 1280, height: 800,
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


def _is_figure_cell(node) -> bool:
    return (isinstance(node, Tag) and node.name == "div" and "cell" in node.get("class", [])
            and node.select_one("div.cell_output img") is not None)


def _chunks(nodes: list) -> list[list]:
    """Split a slide's content before a figure that follows a lot of text (it would not fit)."""
    chunks, current, text = [], [], 0
    for node in nodes:
        if _is_figure_cell(node) and text > SPLIT_AFTER_CHARS and current:
            chunks.append(current)
            current, text = [], 0
        current.append(node)
        if isinstance(node, Tag):
            text += len(node.get_text(" ", strip=True))
    return chunks + [current] if current else chunks


def _kicker(soup: BeautifulSoup, text: str) -> Tag:
    kicker = soup.new_tag("p", attrs={"class": "kicker"})
    kicker.string = text
    return kicker


def _paginated(soup: BeautifulSoup, nodes: list, section_id: str | None, title: str,
               kicker: str | None = None) -> list[Tag]:
    """One slide for `nodes`, or several when a figure would be pushed off the screen."""
    slides = []
    for i, chunk in enumerate(_chunks(nodes)):
        if i == 0:
            lead = [_kicker(soup, kicker)] if kicker else []
            slides.append(_slide(soup, lead + chunk, section_id))
        else:
            slides.append(_slide(soup, [_kicker(soup, f"{title} (continued)")] + chunk))
    return slides


def split(soup: BeautifulSoup, top: Tag, chapter_link: str) -> list[Tag]:
    """Slides from the page's section tree: h1 (title), h2 (slides), h3 (sub-slides)."""
    children = list(top.children)
    subsections = [c for c in children if isinstance(c, Tag) and c.name == "section"]
    intro = [c for c in children if not (isinstance(c, Tag) and c.name == "section")]
    link = soup.new_tag("p", attrs={"class": "chapter-link"})
    anchor = soup.new_tag("a", href=chapter_link, target="_blank")
    anchor.string = "Read this chapter on the course site"
    link.append(anchor)
    slides = [_slide(soup, intro + [link], top.get("id"), ["title-slide"])]
    for section in subsections:
        heading = section.find("h2", recursive=False)
        title = heading.get_text(" ", strip=True) if heading else ""
        parts = list(section.children)
        subs = [c for c in parts if isinstance(c, Tag) and c.name == "section"]
        own = [c for c in parts if not (isinstance(c, Tag) and c.name == "section")]
        stack = []
        has_own_content = any(not _is_blank(c) and c is not heading for c in own)
        if has_own_content or not subs:
            stack += _paginated(soup, own, section.get("id"), title)
        for i, sub in enumerate(subs):
            sub_heading = sub.find("h3", recursive=False)
            sub_title = sub_heading.get_text(" ", strip=True) if sub_heading else title
            if i == 0 and not has_own_content:
                lead = [c for c in own if not _is_blank(c)]
                stack += _paginated(soup, lead + list(sub.children), section.get("id"), sub_title)
            else:
                stack += _paginated(soup, list(sub.children), sub.get("id"), sub_title, kicker=title)
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
    slides = split(soup, top, chapter_link)
    root = posixpath.relpath(".", deck.parent.relative_to(site).as_posix()) + "/"
    # Keep the page's classes (myst-nb's mathjax_ignore) on every slide: MathJax's
    # processing rules (processHtmlClass, ignoreHtmlClass) then apply as on the page.
    for slide in slides:
        slide["class"] = list(slide.get("class", [])) + list(top.get("class", []))
    body = "\n".join(str(s) for s in slides)
    return TEMPLATE.format(title=title, root=root, reveal=REVEAL, css=DECK_CSS, slides=body,
                           head_scripts=head_scripts, body_scripts=body_scripts)


def build_all(site: Path) -> list[Path]:
    site = site.resolve()
    if not (site / REVEAL / "dist" / "reveal.js").is_file():
        raise SystemExit(f"{site / REVEAL}: reveal.js is missing; run `make book` (it copies vendor/)")
    built = []
    for page, deck in decks_to_build(site).items():
        deck.parent.mkdir(parents=True, exist_ok=True)
        deck.write_text(build_deck(page, deck, site), encoding="utf-8")
        built.append(deck)
    return built


def main() -> int:
    site = Path(sys.argv[1] if len(sys.argv) > 1 else "_build/html")
    built = build_all(site)
    for deck in built:
        print(f"slides: {deck.relative_to(site.resolve())}")
    print(json.dumps({"decks": len(built)}))
    return 0 if built else 1


if __name__ == "__main__":
    raise SystemExit(main())
