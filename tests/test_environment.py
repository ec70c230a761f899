"""The conda environment names the same packages as pyproject.toml (conda cannot run here)."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}          # conda-forge name -> PyPI name
NOT_PYTHON_PACKAGES = {"python", "pip", "nodejs"}
REQUIRED = {"jupyter-book", "jupytext", "torch", "einops", "matplotlib", "nbval", "ipywidgets"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement.strip(), maxsplit=1)[0].lower()


def pyproject_packages() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names - {"companion"}


def conda_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, str):
            name = _name(dep)
            names.add(CONDA_NAMES.get(name, name))
    return names - NOT_PYTHON_PACKAGES


def test_environment_yml_names_the_same_packages_as_pyproject():
    assert conda_packages() == pyproject_packages()


def test_every_required_package_is_declared_and_torch_is_pinned():
    assert REQUIRED <= pyproject_packages()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in project["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    assert any(str(d).startswith("pytorch=2.13.0=cpu") for d in env["dependencies"])


def test_constraints_pin_every_declared_package():
    pins = {_name(line) for line in (ROOT / "constraints.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}
    assert pyproject_packages() <= pins
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text().splitlines()
