"""What the built site shows, read back from the Sphinx build, for ``tools/myst_plain.py``.

``SiteData`` unpickles the build environment (``_build/.doctrees/environment.pickle``)
and reads myst-nb's glue cache (``_build/jupyter_execute/<page>.glue.json``); its
``page(docname)`` is the ``Resolver`` that ``myst_plain.convert`` asks. Every answer is
computed the way the HTML builder computes it, from the same data, so the notebook says
what the page says:

* glue values: myst-nb's own ``format_plain_text``;
* equation and exercise numbers: ``env.toc_fignumbers`` (``math_numfig``/``numfig``,
  as Sphinx's math domain and sphinx-exercise number them), ``math_eqref_format``;
* citations: sphinxcontrib-bibtex's reference style (``bibtex_reference_style``) and
  its citations, resolved on the chapter's own bibliography first, as its domain does;
* labels, documents, glossary terms, Python objects: the ``std`` and ``py`` domains.

It needs the build's own packages (Sphinx, myst-nb, sphinxcontrib-bibtex), which
``make book`` has installed.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pybtex.plugin
from pybtex.richtext import Symbol
from docutils.nodes import make_id
from myst_nb.core.variables import format_plain_text
from sphinx.directives.code import LiteralIncludeReader
from sphinxcontrib.bibtex.plugin import find_plugin
from sphinxcontrib.bibtex.richtext import BaseReferenceText
from sphinxcontrib.bibtex.style.referencing import format_references
from sphinxcontrib.bibtex.style.template import SphinxReferenceInfo

LANGUAGES = {".py": "python", ".toml": "toml", ".yml": "yaml", ".yaml": "yaml", ".sh": "bash"}


class SiteData:
    """The built site's numbers, labels and citations (``doctrees``: the build's .doctrees)."""

    def __init__(self, doctrees: Path, executed: Path, site_url: str, source_url: str, root: Path):
        with open(doctrees / "environment.pickle", "rb") as f:
            self.env = pickle.load(f)
        self.executed, self.root = executed, root
        self.site_url, self.source_url = site_url.rstrip("/") + "/", source_url.rstrip("/") + "/"
        config = self.env.config
        self.style = find_plugin("sphinxcontrib.bibtex.style.referencing", config.bibtex_reference_style)()

    def page(self, docname: str) -> Page:
        return Page(self, docname)

    def url(self, docname: str, anchor: str = "") -> str:
        return f"{self.site_url}{docname}.html" + (f"#{anchor}" if anchor else "")

    def glue(self, docname: str) -> dict[str, Any]:
        path = self.executed / f"{docname}.glue.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


class Page:
    """One chapter's view of the site: the ``Resolver`` of ``myst_plain.convert``."""

    def __init__(self, site: SiteData, docname: str):
        self.site, self.docname, self.env = site, docname, site.env
        self.glued = site.glue(docname)

    def _glued(self, key: str, mime: str) -> str:
        if key not in self.glued or mime not in self.glued[key].get("data", {}):
            raise ValueError(f"{self.docname}: no {mime} glued under {key!r}")
        return self.glued[key]["data"][mime]

    def glue_text(self, key: str, fmt: str) -> str:
        return format_plain_text(self._glued(key, "text/plain"), fmt or "s")

    def glue_md(self, key: str) -> str:
        return self._glued(key, "text/markdown")

    def _number(self, docname: str, figtype: str, node_id: str) -> str:
        numbers = self.env.toc_fignumbers.get(docname, {}).get(figtype, {}).get(node_id, ())
        return ".".join(map(str, numbers))

    def equation(self, label: str) -> tuple[str, str]:
        if label not in self.env.domaindata["math"]["objects"]:
            raise ValueError(f"{self.docname}: no equation labelled {label!r}")
        docname, number = self.env.domaindata["math"]["objects"][label]
        node_id = make_id(f"equation-{label}")
        config = self.env.config
        if config.math_numfig and config.numfig:
            eqno = self._number(docname, "displaymath", node_id)
            eqno = config.math_numsep.join(eqno.rsplit(".", 1))
        else:
            eqno = str(number)
        return eqno, self.site.url(docname, node_id)

    def exercise(self, label: str) -> tuple[str, str]:
        registry = getattr(self.env, "sphinx_exercise_registry", {})
        if label not in registry:
            raise ValueError(f"{self.docname}: no exercise labelled {label!r}")
        docname = registry[label]["docname"]
        fmt = self.env.config.numfig_format.get("exercise", "Exercise %s")
        return fmt % self._number(docname, "exercise", label), self.site.url(docname, label)

    def ref(self, label: str) -> tuple[str, str]:
        if label in getattr(self.env, "sphinx_exercise_registry", {}):
            return self.exercise(label)
        labels = self.env.domaindata["std"]["labels"]
        if label not in labels:
            raise ValueError(f"{self.docname}: no label {label!r}")
        docname, anchor, title = labels[label]
        return title, self.site.url(docname, anchor)

    def doc(self, target: str) -> tuple[str, str]:
        docname = target.lstrip("/") if target.startswith("/") else \
            str(Path(self.docname).parent / target).removeprefix("./")
        docname = docname.removesuffix(".md").removesuffix(".ipynb")
        if docname not in self.env.titles:
            raise ValueError(f"{self.docname}: no document {target!r}")
        return self.env.titles[docname].astext(), self.site.url(docname)

    def term(self, target: str) -> str:
        std = self.env.domaindata["std"]           # terms: lower-cased, as the term role looks them up
        entry = std.get("terms", {}).get(target.lower()) or std["objects"].get(("term", target))
        if entry is None:
            raise ValueError(f"{self.docname}: no glossary term {target!r}")
        docname, anchor = entry
        return self.site.url(docname, anchor)

    def py(self, role: str, target: str) -> tuple[str, str | None]:
        short = target.startswith("~")
        name = target.lstrip("~.")
        text = name.rsplit(".", 1)[-1] if short else name
        if role in ("func", "meth") and self.env.config.add_function_parentheses:
            text += "()"
        entry = self.env.domaindata["py"]["objects"].get(name)
        return text, (self.site.url(entry[0], entry[1]) if entry else None)

    def _citations(self, keys: list[str]) -> list:
        """The cited entries in the order the page lists them: as sphinxcontrib-bibtex's
        domain resolves them, those of the chapter's own bibliography first, each group in
        bibliography order (not in the order of the keys)."""
        bibtex = self.env.domaindata["cite"]
        cited = [c for c in bibtex["citations"] if c.key in keys
                 and bibtex["bibliographies"][c.bibliography_key].list_ == "citation"]
        found = {c.key: c for c in cited if c.bibliography_key.docname == self.docname}
        found |= {c.key: c for c in cited if c.key not in found}
        missing = [k for k in keys if k not in found]
        if missing:
            raise ValueError(f"{self.docname}: no bibliography entry for {missing}")
        return list(found.values())

    def cite(self, role: str, keys: list[str]) -> str:
        references = [(c.entry, c.formatted_entry, SphinxReferenceInfo(
            builder=None, fromdocname=self.docname, todocname=c.bibliography_key.docname,
            citation_id=c.citation_id, title=None, pre_text="", post_text=""))
            for c in self._citations(keys)]
        return rich_markdown(format_references(self.site.style, role, references), self.site)

    def bibliography(self, options: dict[str, str]) -> str:
        """The chapter's references, as its bibliography directive lists them on the page."""
        markdown = pybtex.plugin.find_plugin("pybtex.backends", "markdown")()
        lines = []
        for c in self.env.domaindata["cite"]["citations"]:
            if c.bibliography_key.docname == self.docname:
                text = c.formatted_entry.text.render(markdown).replace("\\url ", "")
                lines.append(f"- <a id=\"{c.citation_id}\"></a>[{c.formatted_entry.label}] {text}")
        return "\n".join(lines)

    def literalinclude(self, path: str, options: dict[str, str]) -> tuple[str, str, str]:
        source = (self.site.root / Path(self.docname).parent / path).resolve()
        if not source.is_file():
            raise ValueError(f"{self.docname}: literalinclude of a missing file {path!r}")
        parsed: dict[str, Any] = dict(options)
        if "dedent" in parsed:
            parsed["dedent"] = int(parsed["dedent"]) if parsed["dedent"] else None
        code, _ = LiteralIncludeReader(str(source), parsed, self.env.config).read()
        relative = source.relative_to(self.site.root).as_posix()
        what = f" (`{options['pyobject']}`)" if "pyobject" in options else ""
        caption = f"From [`{relative}`]({self.site.source_url}{relative}){what}:"
        return code, options.get("language", LANGUAGES.get(source.suffix, "")), caption


def rich_markdown(text: Any, site: SiteData) -> str:
    """pybtex rich text from sphinxcontrib-bibtex as Markdown: each reference a link."""
    if isinstance(text, BaseReferenceText):
        info = text.info[0]
        inner = "".join(rich_markdown(part, site) for part in text.parts)
        return f"[{inner}]({site.url(info.todocname, info.citation_id)})"
    if isinstance(text, Symbol):
        return {"nbsp": "&nbsp;", "ndash": "–", "newblock": " "}.get(text.name, " ")
    if hasattr(text, "parts"):
        inner = "".join(rich_markdown(part, site) for part in text.parts)
        tag = getattr(text, "name", None)
        return {"em": f"*{inner}*", "i": f"*{inner}*", "b": f"**{inner}**", "strong": f"**{inner}**"}.get(tag, inner)
    return str(text)
