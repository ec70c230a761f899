r"""Using a trained VAE by importance sampling over codes: a tighter bound on :math:`\log p(x)`, and imputation.

Both weigh codes :math:`z_i \sim q_\phi(z \mid x)` by
:math:`w_i = p_\theta(x \mid z_i)\, p(z_i) / q_\phi(z_i \mid x)`:

* :func:`importance_weighted_log_likelihood` averages the weights inside the log, the
  IWAE bound :math:`\mathcal{L}_k` (Burda et al. 2016); :func:`companion.vae.nll` is its negative;
* :func:`impute` normalises them to fill in missing pixels with their conditional mean;
* :func:`optimise_posterior` fits :math:`q(z \mid x)` to each example by gradient ascent on
  its ELBO, without the encoder: the bounds with that :math:`q` (``posterior=``) measure the
  amortisation gap (Cremer et al. 2018).

Both run the model in eval mode (the encoder sees every input) and restore its mode;
all randomness comes from ``generator`` (:mod:`companion.rng`).
"""
from __future__ import annotations

import math

import torch

from companion import checks
from companion.utils import mode
from companion.vae import VAE, reparameterize
from companion.vae_latents import log_normal

__all__ = ["importance_weighted_log_likelihood", "posterior_elbo", "optimise_posterior", "impute"]


def _log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, m: int,
                 generator: torch.Generator | None, mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``m`` codes per example from q = N(mu, diag exp(logvar)); return their log
    importance weights log p(x | z) + log p(z) - log q(z), ``(m, b)``, and the decoder's output."""
    z = reparameterize(mu.expand(m, *mu.shape), logvar.expand(m, *mu.shape), generator=generator)  # (m, b, k)
    params = model.decode(z.flatten(0, 1))                                                          # (m b, ...)
    repeat = lambda t: t.expand(m, *t.shape).flatten(0, 1)  # noqa: E731
    log_px_z = model.log_likelihood(repeat(x), params, None if mask is None else repeat(mask))
    log_pz = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return log_px_z.unflatten(0, (m, -1)) + log_pz - log_normal(z, mu, logvar), params


def _posterior(model: VAE, x: torch.Tensor, posterior: tuple[torch.Tensor, torch.Tensor] | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mu, logvar)``, each ``(b, latent_dim)``: the encoder's for ``x``, or ``posterior`` checked against it."""
    if posterior is None:
        return model.encode(x)
    if not isinstance(posterior, tuple) or len(posterior) != 2:
        raise ValueError(f"posterior must be a tuple (mu, logvar), got {type(posterior).__name__}")
    b, k = len(checks.tensor("x", x)), model.config.latent_dim
    mu = checks.floats("mu", posterior[0], "b k", b=b, k=k, model=model)
    return mu, checks.floats("logvar", posterior[1], "b k", b=b, k=k, model=model)


@torch.no_grad()
def importance_weighted_log_likelihood(model: VAE, x: torch.Tensor, k: int, *,
                                       generator: torch.Generator | None = None, chunk: int = 64,
                                       posterior: tuple[torch.Tensor, torch.Tensor] | None = None
                                       ) -> torch.Tensor:
    r"""The IWAE estimate of :math:`\log p(x)` with ``k`` samples from :math:`q(z \mid x)`, ``(b,)``.

    .. math:: \mathcal{L}_k(x) = \log \frac{1}{k} \sum_{i=1}^{k}
              \frac{p_\theta(x \mid z_i)\, p(z_i)}{q_\phi(z_i \mid x)}, \qquad z_i \sim q_\phi(z \mid x)

    In expectation a lower bound on :math:`\log p(x)`: the ELBO for ``k = 1``,
    rising with ``k``; it tends to :math:`\log p(x)` when the weights are bounded
    (Burda et al. 2016, Theorem 1). ``chunk`` samples at a time.
    ``x: (b, *data_shape)`` in the model's data form; ``posterior``: ``(mu, logvar)``,
    each ``(b, latent_dim)``, a Gaussian :math:`q` to use instead of the encoder's.

    Example:
        >>> from companion.vae import VAEConfig
        >>> vae = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> importance_weighted_log_likelihood(vae, torch.randint(0, 17, (3, 1, 8, 8)), k=10).shape
        torch.Size([3])
    """
    checks.positive_int("k", k)
    checks.positive_int("chunk", chunk)
    with mode(model, training=False):
        mu, logvar = _posterior(model, x, posterior)
        log_w = torch.cat([_log_weights(model, x, mu, logvar, min(chunk, k - start), generator)[0]
                           for start in range(0, k, chunk)])                                  # (k, b)
    return torch.logsumexp(log_w, dim=0) - math.log(k)


@torch.no_grad()
def posterior_elbo(model: VAE, x: torch.Tensor, k: int, *, generator: torch.Generator | None = None,
                   posterior: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    r"""The ELBO of ``x`` under the encoder's :math:`q` (or ``posterior``), averaged over ``k`` draws, ``(b,)``.

    .. math:: \mathcal{L}(x) \approx \frac1k \sum_{i=1}^k \log \frac{p_\theta(x \mid z_i)\, p(z_i)}{q(z_i \mid x)},
              \qquad z_i \sim q(z \mid x)

    The log of each weight, averaged outside the log (:func:`importance_weighted_log_likelihood`
    averages inside). Eval mode; shapes as there.

    Example:
        >>> from companion.vae import VAEConfig
        >>> vae = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> posterior_elbo(vae, torch.randint(0, 17, (3, 1, 8, 8)), k=10).shape
        torch.Size([3])
    """
    checks.positive_int("k", k)
    with mode(model, training=False):
        mu, logvar = _posterior(model, x, posterior)
        return _log_weights(model, x, mu, logvar, k, generator)[0].mean(0)


def optimise_posterior(model: VAE, x: torch.Tensor, *, steps: int = 300, lr: float = 0.05, samples: int = 8,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Fit a Gaussian :math:`q_x = \mathcal{N}(\mu_x, \operatorname{diag}\sigma_x^2)` to each example, no encoder.

    .. math:: (\mu_x, \log\sigma_x^2) = \arg\max\ \mathbb{E}_{q_x}\big[\log p_\theta(x \mid z) + \log p(z)
              - \log q_x(z)\big]

    Adam on the reparameterized ELBO with ``samples`` draws per step, starting from the encoder's
    output; the model's weights are not changed. Its ELBO minus the encoder's is the amortisation
    gap (Cremer et al. 2018). ``x: (b, *data_shape)`` -> ``(mu, logvar)``, each ``(b, latent_dim)``.

    Example:
        >>> from companion.vae import VAEConfig
        >>> vae = VAE(VAEConfig(latent_dim=4, hidden=32))
        >>> mu, logvar = optimise_posterior(vae, torch.randint(0, 17, (3, 1, 8, 8)), steps=5)
        >>> tuple(mu.shape), mu.requires_grad
        ((3, 4), False)
    """
    checks.positive_int("steps", steps)
    checks.positive_int("samples", samples)
    checks.positive("lr", lr)
    with mode(model, training=False):
        with torch.no_grad():
            start = model.encode(x)
        mu, logvar = (t.detach().clone().requires_grad_(True) for t in start)
        optimiser = torch.optim.Adam([mu, logvar], lr=lr)
        for _ in range(steps):
            # - ELBO summed over the batch: each example's q has its own parameters
            negative_elbo = -_log_weights(model, x, mu, logvar, samples, generator)[0].mean(0).sum()
            gradients = torch.autograd.grad(negative_elbo, [mu, logvar])    # not into the model
            for parameter, gradient in zip((mu, logvar), gradients):
                parameter.grad = gradient
            optimiser.step()
    return mu.detach(), logvar.detach()


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
    ``x: (b, *data_shape)`` in the model's data form, ``observed``: bool, same shape.
    Returns the encoder's input scale (intensities in [0, 1] for levels), shaped like
    ``x``: ``x`` where observed.

    Example:
        >>> from companion.vae import VAEConfig
        >>> vae = VAE(VAEConfig(latent_dim=2, hidden=16))
        >>> x = torch.randint(0, 17, (2, 1, 8, 8))
        >>> impute(vae, x, torch.rand(2, 1, 8, 8) < 0.5, k=10).shape
        torch.Size([2, 1, 8, 8])
    """
    checks.positive_int("k", k)
    checks.positive_int("rounds", rounds)
    u = model.inputs(x)                                                              # (b, d)
    if not isinstance(observed, torch.Tensor) or observed.shape != x.shape or observed.dtype != torch.bool:
        raise ValueError(f"observed must be a bool mask shaped like x {tuple(x.shape)}, "
                         f"got {getattr(observed, 'dtype', type(observed))} {tuple(getattr(observed, 'shape', ()))}")
    seen = checks.same_device("observed", observed, model).reshape(u.shape)
    filled = u * seen
    with mode(model, training=False):
        for _ in range(rounds):
            mu, logvar = model.posterior(filled)
            log_w, params = _log_weights(model, x, mu, logvar, k, generator, mask=seen)   # (k, b)
            means = model.mean(params).unflatten(0, (k, -1))                             # (k, b, d)
            filled = torch.where(seen, u, torch.einsum("kb,kbd->bd", log_w.softmax(dim=0), means))
    return filled.reshape(x.shape)
