"""Checks at the package's public boundaries: one clear ``ValueError`` instead of a deep stack trace.

Every public function of :mod:`companion` that takes data calls one of these first,
so an ordinary mistake (a NumPy array, a float64 batch, grey levels where
intensities are expected, a label out of range, an empty batch, a NaN) is named in
the words of the course, not of PyTorch's kernels:

* :func:`tensor` - a ``torch.Tensor`` of the given shape pattern, non-empty;
* :func:`floats` - float data for a model: float64 is cast to the model's dtype,
  integer data is refused, NaN/inf refused, optional range such as [0, 1];
* :func:`levels` - integer grey levels ``0 .. levels-1`` (``digits(as_levels=True)``);
* :func:`intensities` - float intensities in [0, 1] (``digits()``);
* :func:`labels` - integer class ids in ``[0, num_classes)`` (``-1`` where allowed);
* :func:`config` - a model's config is of the model's config class;
* :func:`positive_int`, :func:`positive`, :func:`fraction` - for configs and options;
* :func:`same_device` - the data are on the model's device.

Example:
    >>> import torch
    >>> levels("x", torch.tensor([[0, 16]])).dtype
    torch.int64
    >>> levels("x", torch.tensor([[0.0, 0.5]]))
    Traceback (most recent call last):
    ...
    ValueError: expected x to hold integer grey levels 0..16 (digits(as_levels=True)), got torch.float32
"""
from __future__ import annotations

import itertools
import math
from typing import TypeVar

import torch
from torch import nn

from companion.utils import check_shape

ROUNDING = 1e-5
"""How far float32 rounding may carry an intensity outside [0, 1]."""

C = TypeVar("C")

__all__ = ["ROUNDING", "config", "tensor", "floats", "levels", "intensities", "labels", "finite",
           "positive_int", "positive", "fraction", "same_device", "model_dtype", "model_device"]


def tensor(name: str, x: object, pattern: str | None = None, **sizes: int) -> torch.Tensor:
    """``x`` itself, after checking it is a non-empty ``torch.Tensor`` of shape ``pattern``.

    ``pattern`` names the axes as in einops (see :func:`companion.utils.check_shape`);
    the first axis is the batch and must not be empty.
    """
    if not isinstance(x, torch.Tensor):
        hint = " (convert it with torch.as_tensor(x))" if type(x).__module__.startswith("numpy") else ""
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}{hint}")
    if pattern is not None:
        check_shape(name, x, pattern, **sizes)
    if x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"expected {name} to hold at least one example, got shape {tuple(x.shape)}")
    return x


def model_dtype(model: nn.Module, default: torch.dtype | None = None) -> torch.dtype:
    """The floating dtype of ``model``'s first floating parameter or buffer.

    A model with none (a fixed map such as a logit or a permutation) computes in the
    dtype of what it is given: pass that as ``default`` (else PyTorch's default dtype).
    """
    for t in itertools.chain(model.parameters(), model.buffers()):   # lazily: stops at the first
        if t.is_floating_point():
            return t.dtype
    return torch.get_default_dtype() if default is None else default


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters or buffers (the CPU for a model with neither)."""
    for t in itertools.chain(model.parameters(), model.buffers()):   # lazily: the first one decides
        return t.device
    return torch.device("cpu")


def same_device(name: str, x: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """Raise unless ``x`` is on ``model``'s device (PyTorch never moves data silently; nor do we)."""
    device = model_device(model)
    if x.device.type != device.type or (device.index is not None and x.device != device):
        raise ValueError(f"{name} is on {x.device} but the model is on {device}: "
                         f"move one of them, e.g. {name}.to({str(device)!r})")
    return x


def finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Raise if ``x`` holds NaN or infinity (they would poison every answer computed from it)."""
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def floats(name: str, x: object, pattern: str | None = None, *, model: object = None,
           low: float | None = None, high: float | None = None, **sizes: int) -> torch.Tensor:
    """Float data, checked: shape, finite, within ``[low, high]``, on ``model``'s device and dtype.

    A float64 batch given to a float32 model is cast to float32 (the precision the
    model computes in anyway); integer data is refused, since it usually means grey
    levels were passed where intensities were expected. A ``model`` that is a plain
    function (no parameters to follow) leaves device and dtype as they are.
    """
    x = tensor(name, x, pattern, **sizes)
    if not x.is_floating_point():
        raise ValueError(f"expected {name} to be a float tensor, got {x.dtype}"
                         " (integer grey levels? intensities are levels / 16)")
    finite(name, x)
    if isinstance(model, nn.Module):
        same_device(name, x, model)
        x = x.to(model_dtype(model))
    if (low is not None and bool((x < low).any())) or (high is not None and bool((x > high).any())):
        raise ValueError(f"expected {name} in [{low}, {high}], got values in "
                         f"[{x.min().item():.4g}, {x.max().item():.4g}]")
    return x


def intensities(name: str, x: object, pattern: str | None = None, *, model: object = None,
                **sizes: int) -> torch.Tensor:
    """Float pixel intensities in [0, 1] (``digits()``); grey levels 0..16 are refused.

    Values may overshoot [0, 1] by float32 rounding (``ROUNDING``, e.g. a mean
    ``softmax(...) @ grey`` of 1.0000001); they are kept as they are.
    """
    x = tensor(name, x, pattern, **sizes)
    if not x.is_floating_point():
        raise ValueError(f"expected {name} to hold float intensities in [0, 1] (digits()), got {x.dtype}"
                         " - integer grey levels? divide them by 16")
    if bool(torch.isfinite(x).all()) and bool((x > 1 + ROUNDING).any()):
        raise ValueError(f"expected {name} to hold intensities in [0, 1] (digits()), got values up to "
                         f"{x.max().item():.4g} - grey levels 0..16? divide them by 16")
    return floats(name, x, pattern, model=model, low=-ROUNDING, high=1.0 + ROUNDING, **sizes)


def levels(name: str, x: object, pattern: str | None = None, *, levels: int = 17,
           **sizes: int) -> torch.Tensor:
    """Integer grey levels in ``0 .. levels-1`` (``digits(as_levels=True)``), as int64."""
    x = tensor(name, x, pattern, **sizes)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"expected {name} to hold integer grey levels 0..{levels - 1} "
                         f"(digits(as_levels=True)), got {x.dtype}")
    if bool((x < 0).any()) or bool((x >= levels).any()):
        raise ValueError(f"expected {name} to hold grey levels 0..{levels - 1}, got values in "
                         f"[{x.min().item()}, {x.max().item()}]")
    return x.long()


def labels(name: str, y: object, num_classes: int, *, b: int | None = None,
           allow_none: bool = False) -> torch.Tensor:
    """Integer class ids ``(b,)`` in ``[0, num_classes)``; ``-1`` ("no label") too if ``allow_none``."""
    y = tensor(name, y, "b", **({} if b is None else {"b": b}))
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"expected {name} to hold integer class ids, got {y.dtype}")
    lo = -1 if allow_none else 0
    if bool((y < lo).any()) or bool((y >= num_classes).any()):
        allowed = f"[{lo}, {num_classes})" + (" (-1 = no label)" if allow_none else "")
        raise ValueError(f"expected {name} in {allowed}, got values in [{y.min().item()}, {y.max().item()}]")
    return y.long()


def config(value: object, kind: type[C]) -> C:
    """``value`` if it is a ``kind`` config (every model is built as ``Model(config)``); a clear error otherwise."""
    if not isinstance(value, kind):
        article = "an" if kind.__name__[0] in "AEIOU" else "a"
        raise ValueError(f"expected {article} {kind.__name__}, got {type(value).__name__} "
                         f"(build the model from a config: Model({kind.__name__}(...)))")
    return value


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1 (bools are refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def positive(name: str, value: object) -> float:
    """``value`` if it is a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def fraction(name: str, value: object, *, closed: bool = False) -> float:
    """``value`` if it lies in [0, 1) (or [0, 1] with ``closed=True``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value and (
        value <= 1 if closed else value < 1)
    if not ok:
        raise ValueError(f"{name} must lie in [0, 1{']' if closed else ')'}, got {value!r}")
    return float(value)
