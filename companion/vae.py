r"""The variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014).

A :class:`VAE`, :math:`p(z)\,p_\theta(x \mid z)` with :math:`p(z) = \mathcal{N}(0, I)` and a
Gaussian encoder :math:`q_\phi(z \mid x)`, is trained on the evidence lower bound :func:`elbo`
through :func:`reparameterize`. Protocol: :func:`loss` (minus the ELBO), :func:`sample` (draws
in the data's form; ``mean=True`` or :func:`decode_latent` give :math:`\mathbb{E}[x \mid z]`,
the picture usually shown), :func:`nll` (minus the bound of :mod:`companion.vae_estimators`).

Data ``x: (b, *data_shape)`` take the likelihood's form: ``"categorical"``, integer grey levels
(``digits(as_levels=True)``), a discrete likelihood whose nats compare across families;
``"bernoulli"``, intensities in [0, 1] (not normalised over grey values); ``"gaussian"``,
real values such as 2-D points (a density).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from companion import checks, rng
from companion.autoencoder import AutoencoderConfig, InputDropout, batch_pattern, mlp
from companion.utils import mode

__all__ = ["VAEConfig", "VAE", "reparameterize", "gaussian_kl", "ELBO", "elbo", "elbo_loss",
           "loss", "sample", "decode_latent", "nll"]

LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


@dataclass(frozen=True)
class VAEConfig(AutoencoderConfig):
    """A :class:`VAE`: an autoencoder's sizes, plus the decoder's likelihood, its number of grey
    ``levels`` (categorical) and the fraction of encoder inputs dropped in training.

    Example:
        >>> VAEConfig(data_shape=(2,), likelihood="gaussian").in_dim
        2
    """

    latent_dim: int = 16
    likelihood: str = "categorical"
    levels: int = 17
    input_dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if checks.positive_int("levels", self.levels) < 2:
            raise ValueError(f"levels must be >= 2, got {self.levels}")
        checks.fraction("input_dropout", self.input_dropout)


class VAE(nn.Module):
    r"""A VAE with MLP encoder and decoder and a choice of likelihood :math:`p_\theta(x \mid z)`.

    ``encode(x) -> (mu, logvar)``, each ``(b, latent_dim)``; ``decode(z)`` gives the likelihood's
    parameters: ``"categorical"`` logits ``(b, in_dim, levels)``, ``"bernoulli"`` logits or
    ``"gaussian"`` means ``(b, in_dim)``. In training mode the encoder drops inputs.

    Example:
        >>> vae = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> mu, logvar = vae.encode(torch.randint(0, 17, (3, 1, 8, 8)))
        >>> tuple(mu.shape), tuple(vae.decode(mu).shape)
        ((3, 4), (3, 64, 17))
    """

    def __init__(self, config: VAEConfig | None = None) -> None:
        super().__init__()
        c = self.config = checks.config(VAEConfig() if config is None else config, VAEConfig)
        self.encoder = nn.Sequential(InputDropout(c.input_dropout), *mlp(c.in_dim, c.hidden, 2 * c.latent_dim))
        self.decoder = mlp(c.latent_dim, c.hidden, c.in_dim * c.levels if c.likelihood == "categorical" else c.in_dim)
        if c.likelihood == "gaussian":
            self.log_sigma = nn.Parameter(torch.full((c.in_dim,), math.log(0.1)))

    def data(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x: (b, *data_shape)`` is in the likelihood's form; return it flat, ``(b, in_dim)``."""
        c, pattern = self.config, batch_pattern(self.config.data_shape)
        if c.likelihood == "categorical":
            return checks.same_device("x", checks.levels("x", x, pattern, levels=c.levels), self).flatten(1)
        check = checks.intensities if c.likelihood == "bernoulli" else checks.floats
        return check("x", x, pattern, model=self).flatten(1)

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input ``(b, in_dim)``: levels scaled to [0, 1], or the data themselves."""
        x, c = self.data(x), self.config
        return x.to(checks.model_dtype(self)) / (c.levels - 1) if c.likelihood == "categorical" else x

    def posterior(self, u: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        r"""The encoder on inputs ``u: (b, in_dim)``: :math:`q_\phi(z \mid x)`'s ``(mu, logvar)``."""
        return tuple(self.encoder[1:](self.encoder[0](u, generator=generator)).chunk(2, dim=1))

    def encode(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        return self.posterior(self.inputs(x), generator=generator)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c = self.config
        out = self.decoder(checks.floats("z", z, "b k", k=c.latent_dim, model=self))
        return out.unflatten(1, (c.in_dim, c.levels)) if c.likelihood == "categorical" else out

    def log_likelihood(self, x: torch.Tensor, params: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\log p_\theta(x \mid z) = \sum_j \log p_\theta(x_j \mid z)`, ``(b,)``; a bool ``mask``
        shaped like ``x`` keeps a subset of pixels (their likelihood: the decoder factorises)."""
        x, likelihood = self.data(x), self.config.likelihood
        if likelihood == "categorical":
            per_pixel = params.log_softmax(-1).gather(-1, x[..., None]).squeeze(-1)
        elif likelihood == "bernoulli":
            per_pixel = -nn.functional.binary_cross_entropy_with_logits(params, x, reduction="none")
        else:
            log_sigma = self.log_sigma.expand_as(params)
            per_pixel = -0.5 * ((x - params) / log_sigma.exp()).pow(2) - log_sigma - 0.5 * math.log(2 * math.pi)
        if mask is not None:
            per_pixel = per_pixel * mask.reshape(per_pixel.shape)
        return per_pixel.sum(1)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb{E}[x \mid z]` on the encoder's input scale (levels / (levels-1)), ``(b, in_dim)``."""
        if self.config.likelihood == "categorical":
            grey = torch.linspace(0, 1, self.config.levels, device=params.device, dtype=params.dtype)
            return params.softmax(-1) @ grey
        return torch.sigmoid(params) if self.config.likelihood == "bernoulli" else params


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, *,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw :math:`z = \mu + \sigma \odot \varepsilon`, :math:`\varepsilon \sim \mathcal{N}(0, I)`.

    The noise :math:`\varepsilon` does not depend on the parameters, so gradients
    reach ``mu`` and ``logvar`` through a deterministic function. Shapes ``(..., k)``;
    :math:`\varepsilon` is drawn from ``generator`` on the CPU, then moved to ``mu``'s device.

    Example:
        >>> mu = torch.zeros(2, 3, requires_grad=True)
        >>> reparameterize(mu, torch.zeros(2, 3)).sum().backward()
        >>> mu.grad
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    if checks.tensor("mu", mu).shape != checks.tensor("logvar", logvar).shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    eps = rng.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Closed-form :math:`\mathrm{KL}(\mathcal{N}(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal{N}(0, I))` per example.

    .. math:: \mathrm{KL} = \tfrac12 \sum_k \left(\mu_k^2 + \sigma_k^2 - 1 - \log\sigma_k^2\right)

    ``mu, logvar: (b, k)`` -> ``(b,)``.

    Example:
        >>> gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4))
        tensor([0.])
    """
    checks.tensor("mu", mu, "b k")
    checks.tensor("logvar", logvar, "b k", b=mu.shape[0], k=mu.shape[1])
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class ELBO(NamedTuple):
    """Per-example terms, each ``(b,)``: ``elbo = reconstruction - beta * kl``."""
    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def elbo(model: VAE, x: torch.Tensor, *, beta: float = 1.0, generator: torch.Generator | None = None) -> ELBO:
    r"""The evidence lower bound with one reparameterized sample, per example.

    .. math:: \mathcal{L}_\beta(x) = \log p_\theta(x \mid z) - \beta\,\mathrm{KL}(q_\phi(z \mid x)\,\|\,p(z)),
              \quad z = \mu_\phi(x) + \sigma_\phi(x) \odot \varepsilon

    With ``beta=1`` an unbiased estimate of a lower bound on :math:`\log p(x)`; ``beta != 1``
    gives the beta-VAE objective (Higgins et al. 2017). The model runs in its current mode
    (training mode: the encoder drops inputs); all randomness comes from ``generator``.

    Example:
        >>> vae = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> out = elbo(vae, torch.randint(0, 17, (5, 1, 8, 8)))
        >>> tuple(out.elbo.shape), bool((out.kl >= 0).all())
        ((5,), True)
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise ValueError(f"beta must be a number >= 0, got {beta!r}")
    mu, logvar = model.encode(x, generator=generator)
    z = reparameterize(mu, logvar, generator=generator)
    reconstruction, kl = model.log_likelihood(x, model.decode(z)), gaussian_kl(mu, logvar)
    return ELBO(reconstruction - beta * kl, reconstruction, kl)


def loss(model: VAE, x: torch.Tensor, *, generator: torch.Generator | None = None,
         beta: float = 1.0) -> torch.Tensor:
    r"""The protocol's training loss: :math:`-\mathcal{L}_\beta(x)` (:func:`elbo`), ``(b,)`` nats.

    Example:
        >>> loss(VAE(VAEConfig(hidden=16)), torch.randint(0, 17, (4, 1, 8, 8))).shape
        torch.Size([4])
    """
    return -elbo(model, x, beta=beta, generator=generator).elbo


def elbo_loss(model: VAE, *, beta: float = 1.0, warmup: int = 0,
              generator: torch.Generator | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""A ``loss_fn`` for :func:`companion.train.train`: :math:`-\mathcal{L}_{\beta_t}(x)` per example.

    With ``warmup > 0`` the KL weight rises linearly from 0 to ``beta`` over the first ``warmup``
    calls (KL annealing, Bowman et al. 2016): the decoder does not learn to ignore ``z`` early on.

    Example:
        >>> loss_fn = elbo_loss(VAE(VAEConfig(latent_dim=2, hidden=16)), warmup=10)
        >>> loss_fn(torch.randint(0, 17, (4, 1, 8, 8))).shape
        torch.Size([4])
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    calls = itertools.count()

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        weight = beta * min(1.0, next(calls) / warmup) if warmup else beta
        return loss(model, x, generator=generator, beta=weight)

    return loss_fn


@torch.no_grad()
def decode_latent(model: VAE, z: torch.Tensor) -> torch.Tensor:
    r"""Codes ``z: (b, latent_dim)`` -> the decoder's mean :math:`\mathbb{E}[x \mid z]`, ``(b, *data_shape)``.

    Intensities in [0, 1] (categorical, Bernoulli): a picture, not a draw; fast enough for a slider.

    Example:
        >>> decode_latent(VAE(VAEConfig(latent_dim=2, hidden=16)), torch.zeros(3, 2)).shape
        torch.Size([3, 1, 8, 8])
    """
    with mode(model, training=False):
        return model.mean(model.decode(z)).reshape(-1, *model.config.data_shape)


@torch.no_grad()
def sample(model: VAE, n: int, *, generator: torch.Generator | None = None, mean: bool = False) -> torch.Tensor:
    r"""Generate: :math:`z \sim \mathcal{N}(0, I)`, then :math:`x \sim p_\theta(x \mid z)`, ``(n, *data_shape)``.

    Draws in the data's form: int64 grey levels (categorical), 0/1 floats (Bernoulli), reals
    (Gaussian). ``mean=True`` decodes the same codes to :math:`\mathbb{E}[x \mid z]`
    (:func:`decode_latent`) instead: smooth pictures, not samples of the model.

    Example:
        >>> vae = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> x, m = sample(vae, 6), sample(vae, 6, mean=True)
        >>> tuple(x.shape), x.dtype, int(x.max()) <= 16, m.dtype, float(m.max()) <= 1
        ((6, 1, 8, 8), torch.int64, True, torch.float32, True)
    """
    checks.positive_int("n", n)
    z = rng.randn((n, model.config.latent_dim), generator=generator, device=checks.model_device(model),
                  dtype=checks.model_dtype(model))
    if mean:
        return decode_latent(model, z)
    with mode(model, training=False):
        params, likelihood = model.decode(z), model.config.likelihood
    if likelihood == "categorical":                                     # x_j ~ Cat(softmax(logits_j))
        x = rng.multinomial(params.softmax(-1).flatten(0, 1), generator=generator)
    elif likelihood == "bernoulli":                                     # x_j ~ Bernoulli(sigmoid(logit_j))
        x = rng.bernoulli(torch.sigmoid(params), generator=generator)
    else:                                                               # x = mean + sigma * eps
        x = params + model.log_sigma.exp() * rng.randn(params.shape, generator=generator, device=params.device,
                                                             dtype=params.dtype)
    return x.reshape(n, *model.config.data_shape)


def nll(model: VAE, x: torch.Tensor, *, generator: torch.Generator | None = None, k: int = 100) -> torch.Tensor:
    r"""The protocol's likelihood: :math:`-\mathcal{L}_k(x)`, an upper bound on :math:`-\log p(x)` in nats, ``(b,)``.

    Minus :func:`companion.vae_estimators.importance_weighted_log_likelihood` with ``k`` samples.

    Example:
        >>> nll(VAE(VAEConfig(hidden=16)), torch.randint(0, 17, (3, 1, 8, 8)), k=5).shape
        torch.Size([3])
    """
    from companion.vae_estimators import importance_weighted_log_likelihood  # (it imports this module)
    return -importance_weighted_log_likelihood(model, x, k, generator=generator)
