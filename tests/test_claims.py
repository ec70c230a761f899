"""The page of the notes' claims (book/claims.md) keeps every claim, each with a verdict and evidence."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "book" / "claims.md"

# The number of claims the page checks. A claim may be added or removed only on purpose: change
# this constant in the same commit, and say in the message which claim and why.
EXPECTED_CLAIMS = 52
VERDICTS = {"true", "false", "depends"}
# Claims the page must keep (issue 15): a word or phrase from each row.
REQUIRED = ["Artsrouni", "General Problem Solver", "Self-Organizing Maps", "supervised learning",
            "sequential data", "very stable", "less diverse", "Hidden Markov"]


def rows() -> list[list[str]]:
    """The claim rows of the page's tables: [number, claim, verdict, what is the case, evidence]."""
    out = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if re.match(r"\|\s*\d+\s*\|", line):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            assert len(cells) == 5, f"a claim row needs 5 cells, got {len(cells)}: {line}"
            out.append(cells)
    return out


def test_the_page_keeps_every_claim_numbered_in_order():
    numbers = [int(r[0]) for r in rows()]
    assert len(numbers) == EXPECTED_CLAIMS, f"{len(numbers)} claims on the page, expected {EXPECTED_CLAIMS}"
    assert numbers == list(range(1, EXPECTED_CLAIMS + 1)), numbers


def test_every_claim_has_a_verdict_and_evidence():
    for number, claim, verdict, case, evidence in rows():
        assert verdict in VERDICTS, f"claim {number}: verdict {verdict!r} is not one of {sorted(VERDICTS)}"
        assert claim and case, f"claim {number} needs the claim and what is the case"
        assert re.search(r"\{cite:p\}`|\{doc\}`", evidence), f"claim {number} cites nothing: {evidence!r}"


def test_the_evidence_resolves():
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    for number, *_, evidence in rows():
        for keys in re.findall(r"\{cite:p\}`([^`]+)`", evidence):
            for key in keys.split(","):
                assert f"{{{key.strip()}," in bib, f"claim {number}: {key} is not in references.bib"
        for doc in re.findall(r"\{doc\}`([^`]+)`", evidence):
            assert (ROOT / "book" / f"{doc}.md").is_file(), f"claim {number}: no chapter {doc}"


def test_the_required_claims_are_there_and_the_page_is_in_the_toc():
    text = " ".join(r[1] for r in rows())
    missing = [word for word in REQUIRED if word.lower() not in text.lower()]
    assert not missing, f"claims the page must keep are gone: {missing}"
    assert "book/claims" in (ROOT / "_toc.yml").read_text(encoding="utf-8")
