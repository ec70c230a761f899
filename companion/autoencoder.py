r"""The plain and the denoising autoencoder (Hinton & Salakhutdinov 2006; Vincent et al. 2008).

An :class:`Autoencoder` compresses ``x`` to a code :math:`z = f_\phi(x)` and decodes it
back, :math:`\hat x = \operatorname{sigmoid}(g_\theta(z))`; it is trained on the squared
:func:`reconstruction_error`. Fed :func:`corrupt` inputs and scored against the clean
``target``, the same model is a denoising autoencoder; :class:`InputDropout` is the other
corruption, masking noise. It compresses, but defines no distribution to sample from: that
is what :mod:`companion.vae` adds.

The data are intensities in [0, 1] (``digits()``), ``x: (b, *data_shape)``, e.g.
``(b, 1, 8, 8)``; grey levels 0..16 are refused with a hint. :func:`mlp`,
:func:`data_shape` and :class:`InputDropout` are shared with the VAE.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from companion import checks, rng

__all__ = ["AutoencoderConfig", "Autoencoder", "corrupt", "InputDropout", "reconstruction_error", "mlp", "data_shape"]


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two hidden GELU layers of width ``hidden``: every encoder and decoder of the autoencoders."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, out_dim))


def data_shape(name: str, value: object) -> tuple[int, ...]:
    """``value`` as a tuple of positive ints (the shape of one example), or a clear error."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a tuple of positive ints such as (1, 8, 8) or (2,), got {value!r}")
    shape = tuple(value)
    if not shape:
        raise ValueError(f"{name} must have at least one axis, got {value!r}")
    for size in shape:
        checks.positive_int(f"every axis of {name}", size)
    return shape


def batch_pattern(shape: tuple[int, ...]) -> str:
    """The einops pattern of a batch of examples of ``shape``: ``(1, 8, 8)`` -> ``"b 1 8 8"``."""
    return " ".join(["b", *map(str, shape)])


@dataclass(frozen=True)
class AutoencoderConfig:
    """Sizes of an :class:`Autoencoder`: the shape of one example, the code and the hidden layers.

    Example:
        >>> AutoencoderConfig(latent_dim=16).in_dim
        64
    """

    data_shape: tuple[int, ...] = (1, 8, 8)
    latent_dim: int = 2
    hidden: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_shape", data_shape("data_shape", self.data_shape))
        checks.positive_int("latent_dim", self.latent_dim)
        checks.positive_int("hidden", self.hidden)

    @property
    def in_dim(self) -> int:
        """Numbers per example, the product of ``data_shape``."""
        return math.prod(self.data_shape)


class Autoencoder(nn.Module):
    r"""A deterministic autoencoder: :math:`z = f_\phi(x)`, :math:`\hat x = \operatorname{sigmoid}(g_\theta(z))`.

    ``x: (b, *data_shape)`` intensities in [0, 1] -> ``encode`` gives ``z: (b, latent_dim)``,
    ``decode`` gives ``x_hat: (b, *data_shape)`` in (0, 1).

    Example:
        >>> ae = Autoencoder(AutoencoderConfig(latent_dim=2, hidden=32))
        >>> tuple(ae.encode(torch.rand(5, 1, 8, 8)).shape), tuple(ae(torch.rand(5, 1, 8, 8)).shape)
        ((5, 2), (5, 1, 8, 8))
    """

    def __init__(self, config: AutoencoderConfig | None = None) -> None:
        super().__init__()
        config = checks.config(AutoencoderConfig() if config is None else config, AutoencoderConfig)
        self.config = config
        self.encoder = mlp(config.in_dim, config.hidden, config.latent_dim)
        self.decoder = mlp(config.latent_dim, config.hidden, config.in_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        x = checks.intensities("x", x, batch_pattern(self.config.data_shape), model=self)
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        z = checks.floats("z", z, "b k", k=self.config.latent_dim, model=self)
        return torch.sigmoid(self.decoder(z)).reshape(-1, *self.config.data_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def corrupt(x: torch.Tensor, std: float = 0.3, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Add Gaussian noise and clip to [0, 1]: :math:`\tilde x = \operatorname{clip}(x + \sigma\varepsilon, 0, 1)`.

    A denoising autoencoder is fed :math:`\tilde x` and trained to output ``x``.
    ``x: (b, ...)`` intensities in [0, 1]; the noise comes from ``generator``
    (:mod:`companion.rng`) and lands on ``x``'s device.

    Example:
        >>> x = torch.full((2, 64), 0.5)
        >>> noisy = corrupt(x, 0.3, generator=torch.Generator().manual_seed(0))
        >>> bool((noisy != x).any()), float(noisy.min()) >= 0.0
        (True, True)
    """
    x = checks.intensities("x", x)
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0:
        raise ValueError(f"std must be a finite number >= 0, got {std!r}")
    noise = rng.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (x + std * noise).clamp(0.0, 1.0)


class InputDropout(nn.Module):
    r"""Masking noise: in training mode zero each input with probability ``p`` and scale the rest by
    :math:`1 / (1 - p)` (the VAE's encoder input; Vincent et al. 2008, Im et al. 2017).

    Unlike :class:`torch.nn.Dropout`, which draws from the global generator, the mask
    comes from the caller's ``generator`` (:func:`companion.rng.bernoulli`).

    Example:
        >>> drop = InputDropout(0.5)
        >>> a = drop(torch.ones(2, 4), generator=torch.Generator().manual_seed(0))
        >>> sorted(set(a.flatten().tolist())), torch.equal(drop.eval()(torch.ones(2, 4)), torch.ones(2, 4))
        ([0.0, 2.0], True)
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = checks.fraction("p", p)

    def forward(self, u: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return u
        keep = rng.bernoulli(torch.full_like(u, 1.0 - self.p), generator=generator)
        return u * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def reconstruction_error(model: Autoencoder, x: torch.Tensor, *,
                         target: torch.Tensor | None = None) -> torch.Tensor:
    r"""Squared error summed over pixels, :math:`\lVert g_\theta(f_\phi(x)) - x^\star \rVert^2`, shape ``(b,)``.

    ``target`` (default ``x``) is what the output should be: the clean image for
    a denoising autoencoder fed ``corrupt(x)``. Both are intensities ``(b, *data_shape)``.

    Example:
        >>> ae = Autoencoder(AutoencoderConfig(hidden=16))
        >>> reconstruction_error(ae, torch.rand(3, 1, 8, 8)).shape
        torch.Size([3])
    """
    x_hat = model(x)
    target = x if target is None else target
    target = checks.intensities("target", target, batch_pattern(model.config.data_shape), b=x_hat.shape[0],
                                model=model)
    return (x_hat - target).pow(2).flatten(1).sum(dim=1)
