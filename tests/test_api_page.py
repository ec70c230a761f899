"""Every module of the companion is on the API page and in the README's module table.

A chapter links a function with {py:func}`companion.x.f`; if companion.x is not documented
on the API page, Sphinx resolves nothing and the link silently goes nowhere.
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT / "companion").glob("*.py") if p.stem != "__init__")


def test_every_module_is_documented_on_the_api_page():
    api = (ROOT / "book" / "api.md").read_text()
    missing = [m for m in MODULES if f".. automodule:: companion.{m}\n" not in api]
    assert not missing, f"book/api.md has no automodule block for {missing}"


def test_every_module_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    missing = [m for m in MODULES if f"`{m}`" not in readme]
    assert not missing, f"README.md's module table does not list {missing}"
