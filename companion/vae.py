r"""Autoencoders and variational autoencoders (Kingma & Welling 2014; Rezende et al. 2014).

* :class:`Autoencoder` compresses ``x`` to a code ``z = f(x)`` and decodes it back;
  :func:`corrupt` plus a clean ``target`` in :func:`reconstruction_error` make it a
  denoising autoencoder (Vincent et al. 2008).
* :class:`VAE` is a latent-variable model :math:`p(z)\,p_\theta(x \mid z)`, :math:`p(z) =
  \mathcal{N}(0, I)`, with a Gaussian encoder :math:`q_\phi(z \mid x)`. It is trained on the
  evidence lower bound :func:`elbo`, :math:`\mathbb{E}_q[\log p(x \mid z)] - \mathrm{KL}(q \,\|\, p(z))
  \le \log p(x)`, through :func:`reparameterize`, and evaluated with the tighter
  importance-weighted bound :func:`importance_weighted_log_likelihood` (Burda et al. 2016).

Images are ``x: (b, 1, h, w)`` (or already flat, ``(b, d)``). The ``"categorical"``
likelihood takes the digits as integer grey levels 0..16 (``digits(as_levels=True)``)
and is a true discrete likelihood, so its nats are comparable with other families;
``"bernoulli"`` and ``"gaussian"`` take intensities in [0, 1].
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import nn

from companion.utils import check_shape

__all__ = ["Autoencoder", "corrupt", "reconstruction_error", "VAE", "reparameterize",
           "gaussian_kl", "ELBO", "elbo", "elbo_loss", "importance_weighted_log_likelihood", "sample",
           "decode_latent", "impute"]

LIKELIHOODS = ("categorical", "bernoulli", "gaussian")


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two hidden layers: every encoder and decoder here."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, out_dim))


def _flat(name: str, x: torch.Tensor, in_dim: int) -> torch.Tensor:
    """``(b, ...)`` -> ``(b, in_dim)``, or a clear error."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0 or x[0].numel() != in_dim:
        raise ValueError(f"expected {name} of shape (b, {in_dim}) or (b, 1, h, w) with h*w={in_dim}, "
                         f"b >= 1, got {tuple(x.shape)}")
    return x.reshape(x.shape[0], in_dim)


# --- the plain and the denoising autoencoder ------------------------------------------

class Autoencoder(nn.Module):
    r"""A deterministic autoencoder: :math:`z = f(x)`, :math:`\hat x = \operatorname{sigmoid}(g(z))`.

    ``x: (b, 1, h, w)`` or ``(b, in_dim)`` in [0, 1] -> ``encode`` gives
    ``z: (b, latent_dim)``, ``decode`` gives ``x_hat: (b, in_dim)`` in (0, 1).

    Example:
        >>> ae = Autoencoder(in_dim=64, latent_dim=2, hidden=32)
        >>> tuple(ae.encode(torch.rand(5, 1, 8, 8)).shape), tuple(ae(torch.rand(5, 64)).shape)
        ((5, 2), (5, 64))
    """

    def __init__(self, in_dim: int = 64, latent_dim: int = 2, hidden: int = 256) -> None:
        super().__init__()
        if min(in_dim, latent_dim, hidden) < 1:
            raise ValueError(f"in_dim, latent_dim and hidden must be >= 1, got {in_dim}, {latent_dim}, {hidden}")
        self.in_dim, self.latent_dim = in_dim, latent_dim
        self.encoder = _mlp(in_dim, hidden, latent_dim)
        self.decoder = _mlp(latent_dim, hidden, in_dim)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(_flat("x", x, self.in_dim).to(self.decoder[0].weight.dtype))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        check_shape("z", z, "b k", k=self.latent_dim)
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def corrupt(x: torch.Tensor, std: float = 0.3, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Add Gaussian noise and clip to [0, 1]: :math:`\tilde x = \operatorname{clip}(x + \sigma\varepsilon)`.

    A denoising autoencoder is fed :math:`\tilde x` and trained to output ``x``.

    Example:
        >>> x = torch.full((2, 64), 0.5)
        >>> noisy = corrupt(x, 0.3, generator=torch.Generator().manual_seed(0))
        >>> bool((noisy != x).any()), float(noisy.min()) >= 0.0
        (True, True)
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a float tensor of intensities in [0, 1], got {getattr(x, 'dtype', type(x))}")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (x + std * noise).clamp(0.0, 1.0)


def reconstruction_error(model: Autoencoder, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    r"""Squared error summed over pixels, :math:`\lVert g(f(x)) - x^\star \rVert^2`, shape ``(b,)``.

    ``target`` (default ``x``) is what the output should be: the clean image for
    a denoising autoencoder fed ``corrupt(x)``.
    """
    x_hat = model(x)
    target = _flat("target", x if target is None else target, model.in_dim).to(x_hat.dtype)
    if target.shape != x_hat.shape:
        raise ValueError(f"target must have as many examples as x, got {tuple(target.shape)} and {tuple(x_hat.shape)}")
    return (x_hat - target).pow(2).sum(dim=1)


# --- the variational autoencoder --------------------------------------------------------

class VAE(nn.Module):
    r"""A VAE with MLP encoder and decoder and a choice of likelihood :math:`p_\theta(x \mid z)`.

    ``encode(x) -> (mu, logvar)``, each ``(b, latent_dim)``; ``decode(z)`` returns
    ``"categorical"`` logits ``(b, in_dim, levels)`` (``x``: integer levels), or
    ``"bernoulli"`` logits / ``"gaussian"`` means ``(b, in_dim)`` (``x`` in [0, 1]; the
    Bernoulli score is not normalised over grey values, the Gaussian is a density:
    neither gives nats comparable with a discrete model). ``input_dropout`` zeroes
    encoder inputs during training (Im et al. 2017); call ``eval()`` before evaluating.

    Example:
        >>> vae = VAE(in_dim=64, latent_dim=4, hidden=32, likelihood="categorical")
        >>> mu, logvar = vae.encode(torch.randint(0, 17, (3, 1, 8, 8)))
        >>> tuple(mu.shape), tuple(vae.decode(mu).shape)
        ((3, 4), (3, 64, 17))
    """

    def __init__(self, in_dim: int = 64, latent_dim: int = 16, hidden: int = 256,
                 likelihood: str = "categorical", levels: int = 17, input_dropout: float = 0.0) -> None:
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        if min(in_dim, latent_dim, hidden) < 1 or levels < 2:
            raise ValueError("in_dim, latent_dim, hidden must be >= 1 and levels >= 2")
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        self.in_dim, self.latent_dim, self.likelihood, self.levels = in_dim, latent_dim, likelihood, levels
        # Input dropout (training only; Im et al. 2017): any q(z | x) gives a valid bound.
        self.encoder = nn.Sequential(nn.Dropout(input_dropout), *_mlp(in_dim, hidden, 2 * latent_dim))
        out = in_dim * levels if likelihood == "categorical" else in_dim
        self.decoder = _mlp(latent_dim, hidden, out)
        if likelihood == "gaussian":
            self.log_sigma = nn.Parameter(torch.full((in_dim,), math.log(0.1)))

    def intensities(self, x: torch.Tensor) -> torch.Tensor:
        """Data ``(b, ...)`` -> encoder input ``(b, in_dim)`` in [0, 1], checking its form."""
        x = _flat("x", x, self.in_dim)
        if self.likelihood == "categorical":
            if x.is_floating_point() or x.min() < 0 or x.max() >= self.levels:
                raise ValueError(f"the categorical VAE takes integer levels 0..{self.levels - 1} "
                                 f"(digits(as_levels=True)), got dtype {x.dtype}")
            return x.to(self.decoder[0].weight.dtype) / (self.levels - 1)
        if not x.is_floating_point():
            raise ValueError(f"the {self.likelihood} VAE takes float intensities in [0, 1], got {x.dtype}")
        return x.to(self.decoder[0].weight.dtype)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(self.encoder(self.intensities(x)).chunk(2, dim=1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        check_shape("z", z, "b k", k=self.latent_dim)
        out = self.decoder(z)
        return out.unflatten(1, (self.in_dim, self.levels)) if self.likelihood == "categorical" else out

    def log_likelihood(self, x: torch.Tensor, params: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\log p_\theta(x \mid z) = \sum_j \log p_\theta(x_j \mid z)`, shape ``(b,)``.

        ``mask`` (bool, shaped like ``x``) keeps only some pixels in the sum: the
        likelihood of that subset, since the decoder factorises over pixels.
        """
        if self.likelihood == "categorical":
            levels = self.intensities(x).mul(self.levels - 1).round().long()
            per_pixel = params.log_softmax(-1).gather(-1, levels[..., None]).squeeze(-1)
        elif self.likelihood == "bernoulli":
            per_pixel = -nn.functional.binary_cross_entropy_with_logits(params, self.intensities(x), reduction="none")
        else:
            log_sigma = self.log_sigma.expand_as(params)
            per_pixel = (-0.5 * ((self.intensities(x) - params) / log_sigma.exp()).pow(2) - log_sigma
                         - 0.5 * math.log(2 * math.pi))
        if mask is not None:
            per_pixel = per_pixel * _flat("mask", mask, self.in_dim)
        return per_pixel.sum(1)

    def mean_intensity(self, params: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathbb{E}[x \mid z]` on the [0, 1] scale, ``(b, in_dim)``: the picture we show."""
        if self.likelihood == "categorical":
            grey = torch.linspace(0, 1, self.levels, device=params.device, dtype=params.dtype)
            return params.softmax(-1) @ grey
        return torch.sigmoid(params) if self.likelihood == "bernoulli" else params.clamp(0, 1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Draw :math:`z = \mu + \sigma \odot \varepsilon`, :math:`\varepsilon \sim \mathcal{N}(0, I)`.

    The noise :math:`\varepsilon` does not depend on the parameters, so gradients
    reach ``mu`` and ``logvar`` through a deterministic function. Shapes ``(..., k)``.

    Example:
        >>> mu = torch.zeros(2, 3, requires_grad=True)
        >>> reparameterize(mu, torch.zeros(2, 3)).sum().backward()
        >>> mu.grad
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"mu and logvar must have the same shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""Closed-form :math:`\mathrm{KL}(\mathcal{N}(\mu, \operatorname{diag}\sigma^2)\,\|\,\mathcal{N}(0, I))` per example.

    .. math:: \mathrm{KL} = \tfrac12 \sum_k \left(\mu_k^2 + \sigma_k^2 - 1 - \log\sigma_k^2\right)

    ``mu, logvar: (b, k)`` -> ``(b,)``.

    Example:
        >>> gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4))
        tensor([0.])
    """
    check_shape("mu", mu, "b k")
    check_shape("logvar", logvar, "b k", b=mu.shape[0], k=mu.shape[1])
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class ELBO(NamedTuple):
    """Per-example terms, each ``(b,)``: ``elbo = reconstruction - beta * kl``."""

    elbo: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor


def elbo(model: VAE, x: torch.Tensor, beta: float = 1.0, *, generator: torch.Generator | None = None) -> ELBO:
    r"""The evidence lower bound with one reparameterized sample, per example.

    .. math:: \mathcal{L}_\beta(x) = \log p_\theta(x \mid z) - \beta\,\mathrm{KL}(q_\phi(z \mid x)\,\|\,p(z)),
              \quad z = \mu_\phi(x) + \sigma_\phi(x) \odot \varepsilon

    With ``beta=1`` it is an unbiased estimate of a lower bound on
    :math:`\log p(x)`; ``beta != 1`` gives the beta-VAE objective (Higgins et al.
    2017). Train with ``loss_fn = lambda x: -elbo(model, x).elbo``.

    Example:
        >>> vae = VAE(64, 4, 32)
        >>> out = elbo(vae, torch.randint(0, 17, (5, 1, 8, 8)))
        >>> tuple(out.elbo.shape), bool((out.kl >= 0).all())
        ((5,), True)
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    mu, logvar = model.encode(x)
    z = reparameterize(mu, logvar, generator)
    reconstruction = model.log_likelihood(x, model.decode(z))
    kl = gaussian_kl(mu, logvar)
    return ELBO(reconstruction - beta * kl, reconstruction, kl)


def elbo_loss(model: VAE, beta: float = 1.0, warmup: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    r"""A ``loss_fn`` for :func:`companion.train.train`: :math:`-\mathcal{L}_{\beta_t}(x)` per example.

    With ``warmup > 0`` the weight of the KL term rises linearly from 0 to
    ``beta`` over the first ``warmup`` calls (KL annealing, Bowman et al. 2016),
    which keeps the decoder from learning to ignore ``z`` early in training.

    Example:
        >>> vae = VAE(64, 2, 16)
        >>> loss_fn = elbo_loss(vae, warmup=10)
        >>> loss_fn(torch.randint(0, 17, (4, 64))).shape
        torch.Size([4])
    """
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    calls = itertools.count()

    def loss_fn(x: torch.Tensor) -> torch.Tensor:
        weight = beta * min(1.0, next(calls) / warmup) if warmup else beta
        return -elbo(model, x, weight).elbo

    return loss_fn


def _log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last axis."""
    return (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)


def _log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, m: int,
                 generator: torch.Generator | None, mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``m`` codes per example from q = N(mu, diag exp(logvar)); return their log
    importance weights log p(x | z) + log p(z) - log q(z), ``(m, b)``, and the decoder's output."""
    z = reparameterize(mu.expand(m, *mu.shape), logvar.expand(m, *mu.shape), generator)  # (m, b, latent)
    params = model.decode(z.flatten(0, 1))                                                # (m b, ...)
    repeat = lambda t: t.expand(m, *t.shape).flatten(0, 1)  # noqa: E731
    log_px_z = model.log_likelihood(repeat(x), params, None if mask is None else repeat(mask))
    log_pz = _log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return log_px_z.unflatten(0, (m, -1)) + log_pz - _log_normal(z, mu, logvar), params


@torch.no_grad()
def importance_weighted_log_likelihood(model: VAE, x: torch.Tensor, k: int, *,
                                       generator: torch.Generator | None = None,
                                       chunk: int = 64) -> torch.Tensor:
    r"""The IWAE estimate of :math:`\log p(x)` with ``k`` samples from :math:`q(z \mid x)`, ``(b,)``.

    .. math:: \mathcal{L}_k(x) = \log \frac{1}{k} \sum_{i=1}^{k}
              \frac{p_\theta(x \mid z_i)\, p(z_i)}{q_\phi(z_i \mid x)}, \qquad z_i \sim q_\phi(z \mid x)

    In expectation a lower bound on :math:`\log p(x)`: the ELBO for ``k = 1``,
    rising towards :math:`\log p(x)` with ``k``. ``chunk`` samples at a time.

    Example:
        >>> vae = VAE(64, 4, 32).eval()
        >>> importance_weighted_log_likelihood(vae, torch.randint(0, 17, (3, 64)), k=10).shape
        torch.Size([3])
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    if model.training:
        raise ValueError("call model.eval() first: in training mode dropout changes q(z | x)")
    mu, logvar = model.encode(x)
    log_w = torch.cat([_log_weights(model, x, mu, logvar, min(chunk, k - start), generator)[0]
                       for start in range(0, k, chunk)])                                  # (k, b)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


# --- using a trained VAE --------------------------------------------------------------

@torch.no_grad()
def decode_latent(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Codes ``z: (b, k)`` -> mean images ``(b, 1, h, w)`` in [0, 1]; fast enough for a slider."""
    side = math.isqrt(model.in_dim)
    return model.mean_intensity(model.decode(z)).reshape(-1, 1, side, side)


@torch.no_grad()
def sample(model: VAE, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Generate: :math:`z \sim \mathcal{N}(0, I)`, then the decoder's mean image, ``(n, 1, h, w)``.

    Example:
        >>> sample(VAE(64, 4, 32), 6, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([6, 1, 8, 8])
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    device = next(model.parameters()).device
    z = torch.randn(n, model.latent_dim, generator=generator, device=device)
    return decode_latent(model, z)


@torch.no_grad()
def impute(model: VAE, x: torch.Tensor, observed: torch.Tensor, k: int = 100, *,
           generator: torch.Generator | None = None, rounds: int = 3) -> torch.Tensor:
    r"""Fill in the missing pixels of ``x`` with their conditional mean given the observed ones.

    .. math:: \mathbb{E}[x_m \mid x_o] = \mathbb{E}_{p(z \mid x_o)}\big[\mathbb{E}_\theta[x_m \mid z]\big]
              \approx \sum_{i=1}^k w_i\, \mathbb{E}_\theta[x_m \mid z_i], \qquad
              w_i \propto \frac{p_\theta(x_o \mid z_i)\, p(z_i)}{q_\phi(z_i \mid \tilde x)}

    Self-normalised importance sampling with :math:`z_i \sim q_\phi(z \mid \tilde x)`
    and the likelihood of the observed pixels only. :math:`\tilde x` is ``x`` with
    the missing pixels at 0 in the first round, and the previous round's filled-in
    image after that, so the proposal improves (adaptive importance sampling).
    ``x: (b, 1, h, w)`` in the model's data form, ``observed``: bool, same shape.
    Returns intensities in [0, 1], ``(b, 1, h, w)``: ``x`` where observed.
    """
    if not isinstance(observed, torch.Tensor) or observed.shape != x.shape or observed.dtype != torch.bool:
        raise ValueError(f"observed must be a bool mask shaped like x {tuple(x.shape)}, "
                         f"got {getattr(observed, 'dtype', type(observed))} {tuple(getattr(observed, 'shape', ()))}")
    if not isinstance(k, int) or k < 1 or rounds < 1:
        raise ValueError(f"k and rounds must be positive ints, got {k!r} and {rounds!r}")
    if model.training:
        raise ValueError("call model.eval() first: in training mode dropout changes the encoder")
    u = model.intensities(x)                                                         # (b, d)
    seen = observed.reshape(u.shape)
    filled = u * seen
    for _ in range(rounds):
        mu, logvar = model.encoder(filled).chunk(2, dim=1)
        log_w, params = _log_weights(model, x, mu, logvar, k, generator, mask=seen)   # (k, b)
        means = model.mean_intensity(params).unflatten(0, (k, -1))                   # (k, b, d)
        filled = torch.where(seen, u, torch.einsum("kb,kbd->bd", log_w.softmax(dim=0), means))
    return filled.reshape(x.shape)
