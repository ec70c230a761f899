"""Small utilities every chapter uses: seeding, device choice, model size and mode, showing source code, timing.

Chapters call :func:`seed_everything` once at the top so that every number they
print is the same from run to run on the same machine, and :func:`show_source`
to display the companion code they are about to run (the site shows the same
code with Sphinx's ``literalinclude``).
"""
from __future__ import annotations

import inspect
import os
import random
import time
from collections.abc import Callable, Iterator
from typing import TypeVar
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["seed_everything", "fresh_init", "get_device", "num_parameters", "mode", "show_source", "check_shape",
           "best_time"]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch, and make PyTorch's CPU kernels deterministic.

    Returns a ``torch.Generator`` seeded with ``seed`` so that callers can pass
    an explicit generator to the sampling functions of the package.

    Example:
        >>> g = seed_everything(0)
        >>> a = torch.rand(2, generator=g)
        >>> b = seed_everything(0)
        >>> torch.equal(a, torch.rand(2, generator=b))
        True
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


M = TypeVar("M")


def fresh_init(build: Callable[[], M], seed: int) -> M:
    """``build()`` with PyTorch's default initialisers seeded by ``seed``; the global RNG is left as it was.

    ``nn.Linear`` and friends initialise from the global generator and take no
    ``generator`` argument; this forks it (``torch.random.fork_rng``), so building a
    model from a seed never changes what the caller's next ``torch.randn`` returns.

    Example:
        >>> a = fresh_init(lambda: torch.nn.Linear(2, 2), seed=3)
        >>> b = fresh_init(lambda: torch.nn.Linear(2, 2), seed=3)
        >>> torch.equal(a.weight, b.weight)
        True
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def get_device(prefer: str | None = None) -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` forces one (``"cpu"``, ``"cuda"``, ``"mps"``); asking for an
    accelerator that is not there raises a ``ValueError`` instead of failing
    later inside PyTorch.

    Example:
        >>> get_device("cpu")
        device(type='cpu')
    """
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if prefer is not None:
        if prefer not in available:
            raise ValueError(f"prefer must be one of {sorted(available)}, got {prefer!r}")
        if not available[prefer]:
            raise ValueError(f"device {prefer!r} is not available on this machine")
        return torch.device(prefer)
    for name in ("cuda", "mps", "cpu"):
        if available[name]:
            return torch.device(name)
    raise AssertionError("unreachable: the CPU is always available")


def num_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters of ``model`` (the one model-size figure of the book).

    Example:
        >>> num_parameters(torch.nn.Linear(3, 2))
        8
    """
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextmanager
def mode(model: torch.nn.Module | Callable, training: bool) -> Iterator[torch.nn.Module | Callable]:
    """Put ``model`` in training (``True``) or evaluation mode inside the block, then restore its mode.

    The package's one policy: every sampler and estimator runs the model in
    evaluation mode, every trainer in training mode, and each leaves the model in
    the mode it found it in. A plain function (a closed-form denoiser, say) has no
    mode and passes through unchanged.

    Example:
        >>> net = torch.nn.Dropout(0.5).train()
        >>> with mode(net, training=False):
        ...     net.training
        False
        >>> net.training
        True
    """
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    was_training = {m: m.training for m in model.modules()}   # each part: a frozen part stays frozen
    model.train(training)
    try:
        yield model
    finally:
        for m, flag in was_training.items():
            m.training = flag


def show_source(obj: object) -> object:
    """Show the source code of a function or class, highlighted in Jupyter.

    In a notebook this returns an object that Jupyter renders as highlighted
    HTML; elsewhere its ``str`` is the plain source.
    """
    try:
        source = inspect.getsource(obj)  # type: ignore[arg-type]
    except (TypeError, OSError) as err:
        raise ValueError(f"cannot show the source of {obj!r}: {err}") from err
    return _Source(source)


class _Source:
    """Source text that renders as highlighted HTML in Jupyter and as text elsewhere."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        formatter = HtmlFormatter(noclasses=True, style="friendly")
        return highlight(self.text, PythonLexer(), formatter)


def check_shape(name: str, x: torch.Tensor, pattern: str, **sizes: int) -> None:
    """Raise a clear ``ValueError`` unless ``x`` has the shape ``pattern``.

    ``pattern`` names the axes as in einops (``"b 2"``, ``"b c h w"``); a
    number fixes that axis, a name is free unless given in ``sizes``, and a
    name used twice (``"b b"``) must have the same size both times.

    Example:
        >>> check_shape("x", torch.zeros(5, 2), "b 2")
        >>> check_shape("x", torch.zeros(5, 3), "b 2")
        Traceback (most recent call last):
        ...
        ValueError: expected x of shape (b, 2), got (5, 3)
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    axes = pattern.split()
    wanted = "(" + ", ".join(axes) + ")"
    got = "(" + ", ".join(str(s) for s in x.shape) + ")"
    if x.dim() != len(axes):
        raise ValueError(f"expected {name} of shape {wanted}, got {got}")
    sizes = dict(sizes)
    for axis, size in zip(axes, x.shape):
        expected = int(axis) if axis.isdigit() else sizes.setdefault(axis, size)  # a repeated name: same size
        if size != expected:
            raise ValueError(f"expected {name} of shape {wanted} with {axis}={expected}, got {got}"
                             if not axis.isdigit() else f"expected {name} of shape {wanted}, got {got}")


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """Wall time in seconds of the fastest of ``repeats`` calls of ``fn()``.

    The fastest run is the one least disturbed by other work on a shared
    machine, so sampling-cost comparisons do not flip on a hiccup.

    Example:
        >>> best_time(lambda: sum(range(1000))) < 1.0
        True
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
