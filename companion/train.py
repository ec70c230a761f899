"""One small, model-agnostic training helper and its evaluation twin.

The model is never asked to compute its own loss: the caller passes a
``loss_fn`` that maps a mini-batch to one loss per example, ``(b,)``, and
:func:`train` takes the mean, steps the optimizer and records the history.
Chapters with a game between two networks (the GAN) write their own loop.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from contextlib import nullcontext

import torch
from tqdm.auto import tqdm

from companion.utils import mode

__all__ = ["train", "evaluate", "minibatches"]

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[..., torch.Tensor]


def _as_tuple(data: torch.Tensor | Sequence[torch.Tensor]) -> Batch:
    data = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not data or not all(isinstance(t, torch.Tensor) for t in data):
        raise ValueError("data must be a tensor or a non-empty sequence of tensors")
    n = data[0].shape[0] if data[0].dim() else 0
    if n == 0:
        raise ValueError("data is empty: its first axis has size 0")
    if any(t.dim() == 0 or t.shape[0] != n for t in data):
        shapes = [tuple(t.shape) for t in data]
        raise ValueError(f"all tensors in data must share their first axis, got shapes {shapes}")
    return data


def minibatches(data: torch.Tensor | Sequence[torch.Tensor], batch_size: int, *,
                generator: torch.Generator | None = None) -> Iterable[Batch]:
    """Yield shuffled mini-batches forever, one pass over the data per epoch.

    ``data`` is a tensor ``(n, ...)`` or a tuple of tensors sharing ``n``;
    each batch is a tuple of tensors ``(batch_size, ...)`` (the last batch of
    an epoch may be smaller).
    """
    data = _as_tuple(data)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = data[0].shape[0]
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield tuple(t[idx.to(t.device)] for t in data)


def train(loss_fn: LossFn, params: torch.nn.Module | Iterable[torch.nn.Parameter],
          data: torch.Tensor | Sequence[torch.Tensor], *, steps: int, lr: float = 1e-3,
          batch_size: int = 128, seed: int = 0, weight_decay: float = 0.0,
          max_grad_norm: float | None = None, lr_schedule: str = "constant",
          desc: str = "training", progress: bool = True) -> list[float]:
    r"""Minimise :math:`\frac{1}{b}\sum_i \ell(\text{batch}_i)` with Adam(W) for ``steps`` steps.

    Args:
        loss_fn: maps one mini-batch, unpacked (``loss_fn(x)`` or
            ``loss_fn(x, y)``), to per-example losses ``(b,)``.
        params: the parameters to optimise, or a model: then its parameters, and the
            model is trained in training mode and left in the mode it was in.
        data: a tensor ``(n, ...)`` or a tuple of tensors sharing ``n``.
        steps: optimizer steps.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decays to 0 over ``steps``).
        max_grad_norm: clip the gradient norm to this, if given.
        progress: show a ``tqdm`` bar (set ``TQDM_DISABLE=1`` to silence it
            everywhere, as the book build and the tests do).

    Returns:
        The mean loss of every step, a list of ``steps`` floats. A loss that turns
        NaN or infinite stops the run with a ``ValueError`` naming the step.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    model = params if isinstance(params, torch.nn.Module) else None
    params = [p for p in (model.parameters() if model is not None else params) if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters were given")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
                 if lr_schedule == "cosine" else None)
    batches = minibatches(data, batch_size, generator=generator)
    history: list[float] = []
    # Pass ``disable`` only to switch the bar off, so that TQDM_DISABLE=1 still works.
    bar = tqdm(range(steps), desc=desc, mininterval=0.5, **({} if progress else {"disable": True}))
    with mode(model, training=True) if model is not None else nullcontext():
        for step in bar:
            history.append(_step(loss_fn, next(batches), params, optimizer, max_grad_norm, step))
            if scheduler is not None:
                scheduler.step()
            if len(history) % 50 == 0:
                bar.set_postfix(loss=f"{sum(history[-50:]) / 50:.4f}")
    return history


def _step(loss_fn: LossFn, batch: Batch, params: list[torch.nn.Parameter],
          optimizer: torch.optim.Optimizer, max_grad_norm: float | None, step: int) -> float:
    """One optimizer step on the mean of ``loss_fn(*batch)``; returns that mean."""
    losses = loss_fn(*batch)
    if not isinstance(losses, torch.Tensor) or losses.dim() != 1:
        got = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(f"loss_fn must return one loss per example, shape (b,), got {got}")
    loss = losses.mean()
    if not torch.isfinite(loss):
        raise ValueError(f"the loss is {loss.item()} at step {step}: training diverged "
                         "(try a smaller lr, max_grad_norm, or check the data)")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(loss_fn: LossFn, data: torch.Tensor | Sequence[torch.Tensor], *,
             batch_size: int = 1024) -> float:
    """The mean of ``loss_fn`` over all of ``data``, in batches, without gradients."""
    data = _as_tuple(data)
    n = data[0].shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        losses = loss_fn(*(t[start:start + batch_size] for t in data))
        if losses.dim() != 1:
            raise ValueError(f"loss_fn must return one loss per example, shape (b,), got {tuple(losses.shape)}")
        total += losses.sum().item()
    return total / n
