"""Shared fixtures: a seeded generator, and float64 for identity checks.

The unit tests run on one thread, like the chapters: their models are tiny, and on a
shared 2-core machine a second thread only adds contention (one CLIP test took 64 CPU
seconds on two threads, 6 on one).
"""
from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)


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
