"""MyST Markdown -> plain Jupyter Markdown, for the notebooks a reader takes off the site.

Colab, classic Jupyter, JupyterLab without jupyterlab-myst and VS Code render CommonMark
with ``$`` math, not MyST: a chapter's ``{glue:text}`` roles, ``{cite}``s, ``{eq}``s,
``literalinclude``s, exercises and labels would reach them as raw syntax. ``convert``
rewrites one markdown cell into what the site shows, asking a ``resolver`` (built from
the Sphinx build, see ``tools/site_data.py``) for every value:

==================================  ====================================================
MyST                                plain Markdown
==================================  ====================================================
``{glue:text}`key:.2f```            the value, formatted as on the site
``{glue:md}`` directive             the glued Markdown (itself converted)
``{cite:t}`k``` / ``{cite:p}``      "Author (Year)" / "(Author, Year)", linked to the
                                    chapter's references on the site
``$$ ... $$ (label)``               ``$$ ... \\tag{n} $$`` with the site's number
``{eq}`label```                     "(n)", linked to the equation on the site
``(label)=``                        dropped (references link to the site's anchors)
``{ref}``, ``{doc}``, ``{term}``,   links to the site's pages, with the site's text
``{py:func}``...
``literalinclude``                  the code itself, under its file name
admonitions, ``exercise``           a block quote with a bold title
``solution``                        ``<details>`` (gated ``solution-start``/``-end``
                                    become markers that ``fold_solutions`` folds, since a
                                    solution can span several cells)
``bibliography``                    the chapter's references as a list
==================================  ====================================================

Fenced code, inline code and math are left alone. An unknown role or directive raises
``ValueError``: the build fails rather than hand a reader raw MyST.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

ROLE = re.compile(r"(?<![`\w\\])\{(?P<name>[A-Za-z][\w:.+-]*)\}(?P<ticks>`+)(?P<body>.+?)(?P=ticks)(?!`)")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,}|:{3,})(?P<info>.*)$")
LABEL = re.compile(r"^ {0,3}\((?P<label>[^()\s]+)\)=\s*$")
MATH_START = re.compile(r"^ {0,3}\$\$")
MATH_END = re.compile(r"\$\$\s*(?:\((?P<label>[^()\s]+)\))?\s*$")
EXPLICIT = re.compile(r"^(?P<text>.*?)\s*<(?P<target>[^<>]+)>$", re.S)
SOLUTION_START = "<!-- solution-start {label} -->"
SOLUTION_END = "<!-- solution-end -->"
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention",
               "danger", "error", "seealso"}


class Resolver(Protocol):
    """What ``convert`` needs to know about the built site (one chapter's view of it)."""

    def glue_text(self, key: str, fmt: str) -> str: ...
    def glue_md(self, key: str) -> str: ...
    def equation(self, label: str) -> tuple[str, str]: ...            # (number, url)
    def ref(self, label: str) -> tuple[str, str]: ...                 # (site text, url)
    def doc(self, target: str) -> tuple[str, str]: ...                # (title, url)
    def term(self, target: str) -> str: ...                           # url
    def py(self, role: str, target: str) -> tuple[str, str | None]: ...
    def cite(self, role: str, keys: list[str]) -> str: ...            # markdown
    def exercise(self, label: str) -> tuple[str, str]: ...            # ("Exercise 3", url)
    def literalinclude(self, path: str, options: dict[str, str]) -> tuple[str, str, str]: ...
    def bibliography(self, options: dict[str, str]) -> str: ...


@dataclass
class Directive:
    name: str
    argument: str = ""
    options: dict[str, str] = field(default_factory=dict)
    body: list[str] = field(default_factory=list)


def parse_directive(info: str, lines: list[str]) -> Directive:
    """``{name} argument`` plus ``:key: value`` options (or a ``---`` YAML block) and a body."""
    name, _, argument = info.strip()[1:].partition("}")
    directive = Directive(name.strip(), argument.strip())
    body = list(lines)
    if body and body[0].strip() == "---":
        end = body.index("---", 1) if "---" in body[1:] else 0
        for option in body[1:end]:
            key, _, value = option.partition(":")
            directive.options[key.strip()] = value.strip()
        body = body[end + 1:]
    while body and (m := re.match(r"^:([\w-]+):\s*(.*)$", body[0])):
        directive.options[m[1]] = m[2].strip()
        body = body[1:]
    directive.body = body
    return directive


def split_explicit(body: str) -> tuple[str | None, str]:
    """``text <target>`` -> (text, target); ``target`` -> (None, target)."""
    if m := EXPLICIT.match(body):
        return m["text"], m["target"]
    return None, body


def link(text: str, url: str | None) -> str:
    return f"[{text}]({url})" if url else text


def role(name: str, body: str, resolver: Resolver) -> str:
    """One inline role as the site renders it."""
    domain, _, kind = name.rpartition(":")
    if name == "glue:text" or name == "glue":
        key, _, fmt = body.rpartition(":") if ":" in body else (body, "", "")
        return resolver.glue_text(key, fmt)
    if name == "cite" or domain == "cite":
        return resolver.cite(kind if domain else "p", [k.strip() for k in body.split(",")])
    if name in ("eq", "math:numref"):
        number, url = resolver.equation(body)
        return link(f"({number})", url)
    text, target = split_explicit(body)
    if name in ("ref", "numref", "std:ref"):
        title, url = resolver.ref(target)
        return link(text or title, url)
    if name == "doc":
        title, url = resolver.doc(target)
        return link(text or title, url)
    if name == "term":
        return link(text or target, resolver.term(target))
    if domain == "py":
        title, url = resolver.py(kind, target)
        return link(f"`{text or title}`", url)
    if name in ("math",):
        return f"${body}$"
    if name in ("code", "samp", "file", "command", "kbd"):
        return f"`{body}`"
    if name in ("sub", "sup"):
        return f"<{name}>{body}</{name}>"
    raise ValueError(f"no plain Markdown for the role {{{name}}}`{body}`")


def inline(text: str, resolver: Resolver) -> str:
    return ROLE.sub(lambda m: role(m["name"], m["body"], resolver), text)


def quote(title: str, body: str) -> list[str]:
    lines = [f"**{title}**", ""] + body.splitlines()
    return [("> " + line).rstrip() for line in lines]


def directive_lines(d: Directive, resolver: Resolver) -> list[str]:
    """One directive as plain Markdown lines."""
    body = "\n".join(d.body).strip("\n")
    if d.name == "literalinclude":
        code, language, caption = resolver.literalinclude(d.argument, d.options)
        fence = "`" * max(3, longest_backticks(code) + 1)
        return [caption, "", f"{fence}{language}", *code.rstrip("\n").splitlines(), fence]
    if d.name in ("glue:md", "glue:markdown"):
        return convert(resolver.glue_md(d.argument), resolver).splitlines()
    if d.name == "bibliography":
        return resolver.bibliography(d.options).splitlines()
    if d.name == "exercise":
        title, url = resolver.exercise(d.options["label"]) if "label" in d.options else ("Exercise", None)
        title += f" ({inline(d.argument, resolver)})" if d.argument else ""
        return quote(title, convert(body, resolver))
    if d.name == "solution":
        exercise, _ = resolver.exercise(d.argument)
        return details(f"Solution to {exercise}", convert(body, resolver).splitlines())
    if d.name == "solution-start":
        return [SOLUTION_START.format(label=d.argument)]
    if d.name == "solution-end":
        return [SOLUTION_END]
    if d.name == "admonition" or d.name in ADMONITIONS:
        title = inline(d.argument, resolver) if d.name == "admonition" else d.name.capitalize()
        if d.name == "seealso":
            title = "See also"
        return quote(title, convert(body, resolver))
    if d.name in ("math", "amsmath"):
        number = resolver.equation(d.options["label"])[0] if "label" in d.options else ""
        return math_lines(d.body, number)
    if d.name in ("code-block", "code", "sourcecode"):
        fence = "`" * max(3, longest_backticks(body) + 1)
        return [f"{fence}{d.argument}", *d.body, fence]
    raise ValueError(f"no plain Markdown for the directive {{{d.name}}} {d.argument}")


def details(summary: str, lines: list[str]) -> list[str]:
    return ["<details>", f"<summary>{summary}</summary>", "", *lines, "", "</details>"]


def longest_backticks(text: str) -> int:
    return max((len(run) for run in re.findall(r"`+", text)), default=0)


def math_lines(lines: list[str], number: str) -> list[str]:
    tag = [rf"\tag{{{number}}}"] if number else []
    return ["$$", *[line for line in lines if line.strip()], *tag, "$$"]


def closing_fence(lines: list[str], start: int, fence: str) -> int:
    close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
    for j in range(start, len(lines)):
        if close.match(lines[j]):
            return j
    return len(lines)           # unclosed: runs to the end, as in CommonMark


def convert(text: str, resolver: Resolver) -> str:
    """One markdown cell of a MyST notebook as plain Markdown (see the module docstring)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if m := FENCE.match(line):
            j = closing_fence(lines, i + 1, m["fence"])
            if m["info"].strip().startswith("{"):
                out += directive_lines(parse_directive(m["info"], lines[i + 1:j]), resolver)
            else:
                out += lines[i:j + 1]
            i = j + 1
        elif LABEL.match(line):
            i += 1
        elif MATH_START.match(line):
            i = display_math(lines, i, out, resolver)
        else:
            out.append(inline(line, resolver))
            i += 1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def display_math(lines: list[str], i: int, out: list[str], resolver: Resolver) -> int:
    """``$$ ... $$ (label)`` starting at line i: append it with its number; return the next line."""
    first = lines[i].strip()[2:]
    j = i
    if not MATH_END.search(first):              # a multi-line block: find its closing $$
        j = next((k for k in range(i + 1, len(lines)) if MATH_END.search(lines[k])), len(lines) - 1)
    block = "\n".join([first, *lines[i + 1:j + 1]]) if j > i else first
    m = MATH_END.search(block)
    content = block[:m.start()] if m else block
    number = resolver.equation(m["label"])[0] if m and m["label"] else ""
    out += math_lines(content.splitlines(), number)
    return j + 1


def fold_solutions(cells: list, exercise_title) -> None:
    """Fold gated solutions (markers left by ``convert``) into ``<details>``, cell by cell.

    A gated solution may hold code cells: each markdown piece of it becomes its own
    ``<details>`` (the later ones "continued"), and its code cells get JupyterLab's
    ``source_hidden``/``outputs_hidden`` so that they start folded too.
    """
    start = re.compile(r"^<!-- solution-start (?P<label>\S+) -->$")
    label = None
    for cell in cells:
        if cell.cell_type != "markdown":
            if label is not None:
                cell.metadata.setdefault("jupyter", {}).update(source_hidden=True, outputs_hidden=True)
            continue
        out, piece = [], None if label is None else []
        continued = label is not None
        for line in cell.source.splitlines():
            if m := start.match(line):
                label, piece, continued = m["label"], [], False
            elif line == SOLUTION_END and label is not None:
                out += fold(piece, label, continued, exercise_title)
                label, piece = None, None
            elif piece is not None:
                piece.append(line)
            else:
                out.append(line)
        if piece is not None:
            out += fold(piece, label, continued, exercise_title)
        cell.source = "\n".join(out)


def fold(piece: list[str], label: str, continued: bool, exercise_title) -> list[str]:
    """One markdown piece of a solution in ``<details>``; the first piece even when empty
    (a solution that is all code still gets its title above its folded cells)."""
    if continued and not "".join(piece).strip():
        return []
    summary = f"Solution to {exercise_title(label)}" + (" (continued)" if continued else "")
    while piece and not piece[0].strip():
        piece = piece[1:]
    return details(summary, piece)
