"""The package's one rule for randomness and devices, in code.

Every random draw in :mod:`companion` comes from the ``generator`` argument of the
public function that needs it: a CPU ``torch.Generator``. The numbers are drawn on
the CPU and then moved to the model's device, so the same seed gives the same noise
on the CPU, on CUDA and on Apple's MPS (their own generators give other streams).
``generator=None`` draws from PyTorch's default CPU generator, as ``torch.randn``
does. Library code never seeds the global generator; :func:`fresh_init` builds a
model from a seed without touching it.

Example:
    >>> g = torch.Generator().manual_seed(0)
    >>> randn((2, 3), generator=g).shape
    torch.Size([2, 3])
    >>> a = randn((3,), generator=torch.Generator().manual_seed(1))
    >>> torch.equal(a, randn((3,), generator=torch.Generator().manual_seed(1)))
    True
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["check_generator", "randn", "rand", "randint", "randperm", "multinomial", "bernoulli"]

Device = torch.device | str | None


def check_generator(generator: object) -> torch.Generator | None:
    """``generator`` if it is ``None`` or a CPU ``torch.Generator``; a clear error otherwise."""
    if generator is None:
        return None
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator (the package draws on the CPU and moves "
                         f"the numbers to the model's device), got one on {generator.device}")
    return generator


def _place(x: torch.Tensor, device: Device, dtype: torch.dtype | None) -> torch.Tensor:
    return x.to(device=device if device is not None else x.device, dtype=dtype or x.dtype)


def randn(shape: Sequence[int], *, generator: torch.Generator | None = None, device: Device = None,
          dtype: torch.dtype | None = None) -> torch.Tensor:
    """Standard normal noise of ``shape``, drawn on the CPU, then moved to ``device``/``dtype``."""
    noise = torch.randn(tuple(shape), generator=check_generator(generator))
    return _place(noise, device, dtype)


def rand(shape: Sequence[int], *, generator: torch.Generator | None = None, device: Device = None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Uniform noise on [0, 1) of ``shape``, drawn on the CPU, then moved to ``device``/``dtype``."""
    return _place(torch.rand(tuple(shape), generator=check_generator(generator)), device, dtype)


def randint(low: int, high: int, shape: Sequence[int], *, generator: torch.Generator | None = None,
            device: Device = None) -> torch.Tensor:
    """Integers in ``[low, high)`` (int64) of ``shape``, drawn on the CPU, then moved to ``device``."""
    x = torch.randint(low, high, tuple(shape), generator=check_generator(generator))
    return _place(x, device, None)


def randperm(n: int, *, generator: torch.Generator | None = None, device: Device = None) -> torch.Tensor:
    """A random permutation of ``0 .. n-1``, drawn on the CPU, then moved to ``device``."""
    return _place(torch.randperm(n, generator=check_generator(generator)), device, None)


def multinomial(probs: torch.Tensor, num_samples: int = 1, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.multinomial`` of ``probs: (b, k)`` drawn on the CPU (in float64), returned on ``probs``' device."""
    idx = torch.multinomial(probs.detach().double().cpu(), num_samples, generator=check_generator(generator))
    return idx.to(probs.device)


def bernoulli(probs: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """0/1 draws with probabilities ``probs`` (any shape), drawn on the CPU, on ``probs``' device and dtype."""
    u = torch.rand(tuple(probs.shape), generator=check_generator(generator))
    return (u < probs.detach().cpu()).to(device=probs.device, dtype=probs.dtype)
