"""Shared fixtures: a seeded generator, and float64 for identity checks."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture
def g() -> torch.Generator:
    """A torch.Generator with a fixed seed: tests draw their random inputs from it."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def float64():
    """Run a test with float64 as the default dtype, so identities hold to 1e-10."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)
