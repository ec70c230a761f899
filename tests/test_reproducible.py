"""Running a chapter twice gives the same numbers: seed_everything makes it deterministic.

The numbers a chapter's text quotes are glued into the prose with myst-nb's
``glue``; this test executes the first chapter twice and compares every one.
"""
from __future__ import annotations

from pathlib import Path

import jupytext
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "generative_vs_discriminative.md"


def glued_values(path: Path) -> dict[str, str]:
    """Execute a MyST notebook and return {glue name: text/plain value}."""
    nb = jupytext.read(path)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            record = output.get("metadata", {}).get("scrapbook")
            if record is not None:
                values[record["name"]] = output["data"][record["mime_prefix"] + "text/plain"]
    return values


@pytest.mark.slow
def test_first_chapter_quotes_the_same_numbers_twice():
    first, second = glued_values(CHAPTER), glued_values(CHAPTER)
    assert len(first) >= 5, f"expected the chapter to glue its quoted numbers, found {sorted(first)}"
    assert first == second
