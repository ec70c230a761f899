"""tools/myst_plain.py and tools/notebook_check.py: MyST in, plain Jupyter Markdown out.

Fast unit tests against a fake site (no build needed); they run in ``make test``. The
same conversion on the real build is checked by ``tools/notebook_check.py`` when
``make book`` writes the notebooks, and by tests/test_notebooks_site.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))          # the tools import each other as siblings

import myst_plain  # noqa: E402
import notebook_check  # noqa: E402

SITE = "https://org.github.io/repo/"


class FakeSite:
    """A resolver with a few known answers, as tools/site_data.py would give them."""

    def glue_text(self, key, fmt):
        return format({"loss": 0.123456, "n": 12}[key], fmt or "")

    def glue_md(self, key):
        return {"table": "| a | b |\n| - | - |\n| {glue:text}`n` | {cite:p}`kingma2014` |"}[key]

    def equation(self, label):
        number = {"ch-elbo": "2", "ch-kl": "3"}[label]
        return number, f"{SITE}book/ch.html#equation-{label}"

    def ref(self, label):
        return {"ch-chapter": ("The chapter", f"{SITE}book/ch.html#ch-chapter"),
                "ch-ex-1": ("Exercise 1", f"{SITE}book/ch.html#ch-ex-1")}[label]

    def doc(self, target):
        return "Other chapter", f"{SITE}book/{target}.html"

    def term(self, target):
        return f"{SITE}book/glossary.html#term-{target}"

    def py(self, role, target):
        return target + "()", f"{SITE}book/api.html#{target}"

    def cite(self, role, keys):
        text = {"kingma2014": ("Kingma and Welling", "2014"), "ho2020": ("Ho et al.", "2020")}
        links = [f"[{text[k][0]}, {text[k][1]}]({SITE}book/ch.html#id{i})" for i, k in enumerate(keys)]
        return f"({'; '.join(links)})" if role == "p" else \
            "; ".join(f"{text[k][0]} ([{text[k][1]}]({SITE}book/ch.html#id{i}))" for i, k in enumerate(keys))

    def exercise(self, label):
        return {"ch-ex-1": "Exercise 1", "ch-ex-2": "Exercise 2"}[label], f"{SITE}book/ch.html#{label}"

    def literalinclude(self, path, options):
        return "def elbo(x):\n    return x\n", "python", "From [`companion/vae.py`](src) (`elbo`):"

    def bibliography(self, options):
        return "- [KW14] Kingma and Welling. Auto-encoding variational Bayes. 2014."


def convert(text: str) -> str:
    return myst_plain.convert(text, FakeSite())


def test_glue_roles_become_the_values_with_their_format():
    out = convert("The loss is {glue:text}`loss:.2f` after {glue:text}`n` steps.")
    assert out == "The loss is 0.12 after 12 steps."


def test_citations_equations_and_references_become_links_with_the_site_text():
    out = convert("As {cite:t}`kingma2014` show {cite}`kingma2014,ho2020`, {eq}`ch-elbo` "
                  "and {ref}`ch-chapter`; {ref}`that one <ch-ex-1>`, {term}`ELBO`, "
                  "{doc}`the VAE <vae>` and {py:func}`companion.vae.elbo`.")
    expected = [
        "Kingma and Welling ([2014](https://org.github.io/repo/book/ch.html#id0))",
        "([Kingma and Welling, 2014](", "[Ho et al., 2020](",
        "[(2)](https://org.github.io/repo/book/ch.html#equation-ch-elbo)",
        "[The chapter](https://org.github.io/repo/book/ch.html#ch-chapter)",
        "[that one](https://org.github.io/repo/book/ch.html#ch-ex-1)",
        "[ELBO](https://org.github.io/repo/book/glossary.html#term-ELBO)",
        "[the VAE](https://org.github.io/repo/book/vae.html)",
        "[`companion.vae.elbo()`](https://org.github.io/repo/book/api.html#companion.vae.elbo)",
    ]
    assert [e for e in expected if e not in out] == [], out
    assert not notebook_check.cell_problems(out)


def test_numbered_equations_get_the_site_number_as_a_tag_and_labels_go():
    out = convert("(ch-chapter)=\n# Title\n\n$$\n\\log p(x) \\ge \\mathcal{L}\n$$ (ch-elbo)\n\n"
                  "$$ a = b $$ (ch-kl)\n\n$$\nc = d\n$$\n")
    assert out == ("# Title\n\n$$\n\\log p(x) \\ge \\mathcal{L}\n\\tag{2}\n$$\n\n"
                   "$$\n a = b \n\\tag{3}\n$$\n\n$$\nc = d\n$$\n")


def test_code_and_math_are_left_alone():
    text = "Use `{cite}` roles:\n\n```python\nx = {'a': 1}  # {eq}`x`\n```\n\n$f_{w}$ and $\\{x\\}$\n"
    assert convert(text) == text


def test_literalinclude_becomes_the_code_under_its_file_name():
    out = convert("Text.\n\n```{literalinclude} ../companion/vae.py\n:pyobject: elbo\n```\n")
    assert out == ("Text.\n\nFrom [`companion/vae.py`](src) (`elbo`):\n\n"
                   "```python\ndef elbo(x):\n    return x\n```\n")


def test_admonitions_and_exercises_become_block_quotes_with_converted_bodies():
    out = convert("```{admonition} Learning objectives\n:class: tip\nAfter this you can\n\n"
                  "- use {eq}`ch-kl`.\n```\n\n````{exercise}\n:label: ch-ex-1\nDerive {eq}`ch-elbo`.\n"
                  "```python\nx = 1\n```\n````\n\n```{note}\nBe careful.\n```\n")
    assert "> **Learning objectives**\n>\n> After this you can\n>\n> - use [(3)](" in out
    assert "> **Exercise 1**\n>\n> Derive [(2)](" in out and "> ```python\n> x = 1\n> ```" in out
    assert "> **Note**\n>\n> Be careful." in out
    assert not notebook_check.cell_problems(out)


def test_a_whole_solution_is_folded_in_details():
    out = convert("```{solution} ch-ex-2\n:class: dropdown\nIt is {glue:text}`n`.\n```\n")
    assert out == "<details>\n<summary>Solution to Exercise 2</summary>\n\nIt is 12.\n\n</details>\n"


def test_a_gated_solution_over_several_cells_is_folded_piece_by_piece():
    cells = [
        nbformat.v4.new_markdown_cell("Before.\n\n```{solution-start} ch-ex-1\n:class: dropdown\n```\n\nWhy:"),
        nbformat.v4.new_code_cell("answer = 42"),
        nbformat.v4.new_markdown_cell("So it is 42.\n\n```{solution-end}\n```\n\nAfter."),
        nbformat.v4.new_code_cell("visible = 1"),
    ]
    for cell in cells:
        if cell.cell_type == "markdown":
            cell.source = convert(cell.source)
    myst_plain.fold_solutions(cells, lambda label: FakeSite().exercise(label)[0])
    assert cells[0].source == "Before.\n\n<details>\n<summary>Solution to Exercise 1</summary>\n\nWhy:\n\n</details>"
    assert cells[1].metadata["jupyter"] == {"source_hidden": True, "outputs_hidden": True}
    assert cells[2].source == ("<details>\n<summary>Solution to Exercise 1 (continued)</summary>\n\n"
                               "So it is 42.\n\n\n</details>\n\nAfter.")
    assert "jupyter" not in cells[3].metadata
    assert not any(notebook_check.cell_problems(c.source) for c in cells if c.cell_type == "markdown")


def test_glued_markdown_is_converted_too_and_the_bibliography_is_listed():
    out = convert("```{glue:md} table\n:format: myst\n```\n\n## References\n\n"
                  "```{bibliography}\n:filter: docname in docnames\n```\n")
    assert "| 12 | ([Kingma and Welling, 2014](" in out
    assert "- [KW14] Kingma and Welling." in out


def test_an_unknown_role_or_directive_fails_the_build():
    with pytest.raises(ValueError, match="no plain Markdown for the role"):
        convert("See {footcite}`x`.")
    with pytest.raises(ValueError, match="no plain Markdown for the directive"):
        convert("```{figure} a.png\n```\n")


@pytest.mark.parametrize("text, what", [
    ("As {cite}`x` shows.", "role"),
    ("```{exercise}\nDo it.\n```\n", "directive"),
    (":::{note}\nHi\n:::\n", "directive"),
    ("(vae-chapter)=\n# VAE\n", "label"),
    ("$$\nx\n$$ (eq-x)\n", "equation label"),
    ("```python\n```\n", "empty code block"),
    ("<!-- solution-end -->\n", "solution marker"),
])
def test_the_check_finds_left_over_myst_and_empty_code(text, what):
    found = notebook_check.cell_problems(text)
    assert any(p.startswith(what) for p in found), found


def test_the_check_compares_equation_numbers_and_numbers_with_the_page():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "A loss of 0.12 in [(2)](u).\n\n$$\nx\n\\tag{2}\n$$\n")])
    page = ('<main><p>A loss of 0.12 in (2).</p><div class="math"><span class="eqno">(2)<a href="#e">#</a></span>'
            '\\[x\\]</div></main>')
    assert notebook_check.differences(nb, page) == []
    wrong = page.replace("0.12", "0.13").replace('eqno">(2)', 'eqno">(1)')
    found = notebook_check.differences(nb, wrong)
    assert any("equation numbers ['2'] on the notebook, ['1']" in d for d in found)
    assert any("numbers ['0.12'] where the page has ['0.13']" in d for d in found)
    # A number the page also shows, but elsewhere: the order tells.
    swapped = page.replace("A loss of 0.12 in (2).", "A loss of 2 in (0.12).")
    assert notebook_check.differences(nb, swapped)


def test_the_numbers_of_math_are_read_as_jupyter_shows_them():
    # Jupyter keeps $ math away from the Markdown: the _ of L_1 and L_k is no emphasis, so
    # the notebook shows the same TeX, and the same numbers, as the page.
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "with $\\mathcal{L}_1 = \\mathcal{L}$ and $\\mathcal{L}_k \\le \\mathcal{L}_{k+1} \\le \\log p_\\theta(x)$."
        " (Theorem 1)")])
    page = ("<main><p>with \\(\\mathcal{L}_1 = \\mathcal{L}\\) and "
            "\\(\\mathcal{L}_k \\le \\mathcal{L}_{k+1} \\le \\log p_\\theta(x)\\). (Theorem 1)</p></main>")
    assert notebook_check.differences(nb, page) == []


def test_check_site_reads_each_notebook_against_its_page_and_the_student_edition_has_no_solution(tmp_path):
    (tmp_path / "_notebooks" / "book").mkdir(parents=True)
    (tmp_path / "book").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        "It is 12.\n\n<details>\n<summary>Solution to Exercise 1</summary>\n\nIt is 12.\n\n</details>")])
    nbformat.write(nb, tmp_path / "_notebooks" / "book" / "ch.ipynb")
    (tmp_path / "book" / "ch.html").write_text("<main><p>It is 12.</p><p>Solution to Exercise 1</p><p>It is 12.</p></main>",
                                            encoding="utf-8")
    assert notebook_check.check_site(tmp_path) == []
    assert notebook_check.check_site(tmp_path, student=True) == ["book/ch: a solution in the student edition"]
    (tmp_path / "book" / "ch.html").unlink()
    assert notebook_check.check_site(tmp_path) == [f"book/ch: no page {tmp_path / 'book' / 'ch.html'}"]


def test_a_solution_that_is_all_code_still_gets_its_title_above_the_folded_cells():
    cells = [nbformat.v4.new_markdown_cell("```{solution-start} ch-ex-2\n:class: dropdown\n```\n"),
             nbformat.v4.new_code_cell("answer = 42"),
             nbformat.v4.new_markdown_cell("```{solution-end}\n```\n\nNext.")]
    for cell in (cells[0], cells[2]):
        cell.source = convert(cell.source)
    myst_plain.fold_solutions(cells, lambda label: FakeSite().exercise(label)[0])
    assert cells[0].source == "<details>\n<summary>Solution to Exercise 2</summary>\n\n\n</details>"
    assert cells[1].metadata["jupyter"]["source_hidden"]
    assert cells[2].source == "\nNext."
