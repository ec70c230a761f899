r"""What a VAE's codes carry: active units, the aggregated posterior, and the rate split in two.

All functions take the encoder's outputs for a data set, ``mu, logvar: (n, k)`` (the Gaussians
:math:`q_\phi(z \mid x_i) = \mathcal{N}(\mu_i, \operatorname{diag}\sigma_i^2)`), so they work for
any Gaussian encoder. With the data taken as the :math:`n` examples, each with probability
:math:`1/n`, the **aggregated posterior** is the mixture

.. math:: q_\phi(z) = \frac1n \sum_{i=1}^n q_\phi(z \mid x_i),

and the average KL term of the ELBO (the *rate*) splits exactly into two parts
(Hoffman & Johnson 2016, "ELBO surgery"):

.. math:: \underbrace{\frac1n \sum_i \mathrm{KL}\big(q_\phi(z \mid x_i)\,\|\,p(z)\big)}_{\text{rate } R}
          = \underbrace{I_q(x; z)}_{\text{mutual information}} + \mathrm{KL}\big(q_\phi(z)\,\|\,p(z)\big),

so the rate is only an upper bound on the information the code holds about the example
(Alemi et al. 2018), and :math:`I_q(x; z) \le \log n`.

* :func:`log_normal`: a diagonal Gaussian's log-density (also :mod:`companion.vae_estimators`' weights);
* :func:`activity` and :func:`kl_per_dimension`: per code dimension (Burda et al. 2016's active
  units: :math:`\operatorname{Cov}_x(\mathbb{E}_q[z_j]) > 10^{-2}`);
* :func:`log_aggregate_posterior`: :math:`\log q_\phi(z)`;
* :func:`rate_decomposition`: :math:`R`, :math:`I_q(x; z)` and :math:`\mathrm{KL}(q_\phi(z)\,\|\,p(z))`;
* :func:`prior_hole_mass`: the prior's probability where :math:`q_\phi(z)` is much smaller than :math:`p(z)`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from companion import checks, rng

__all__ = ["ACTIVE", "log_normal", "activity", "kl_per_dimension", "log_aggregate_posterior", "Rate",
           "rate_decomposition", "prior_hole_mass"]

ACTIVE = 1e-2
"""Burda et al. (2016, section 5.2): unit j is active if :math:`\\operatorname{Cov}_x(\\mathbb{E}_q[z_j]) > 10^{-2}`."""


def _encoded(mu: torch.Tensor, logvar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    checks.floats("mu", mu, "n k")
    return mu, checks.floats("logvar", logvar, "n k", n=mu.shape[0], k=mu.shape[1])


def log_normal(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r""":math:`\log \mathcal{N}(z; \mu, \operatorname{diag} e^{\text{logvar}})`, summed over the last axis.

    .. math:: -\tfrac12 \sum_j \Big(\frac{(z_j - \mu_j)^2}{\sigma_j^2} + \log \sigma_j^2 + \log 2\pi\Big)

    ``z, mu, logvar: (..., k)``, broadcast against each other -> ``(...)``.

    Example:
        >>> round(log_normal(torch.zeros(1), torch.zeros(1), torch.zeros(1)).item(), 4)   # -log sqrt(2 pi)
        -0.9189
    """
    return (-0.5 * ((z - mu).pow(2) / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)


def activity(mu: torch.Tensor) -> torch.Tensor:
    r"""Per code dimension, the variance over the data of the posterior mean, :math:`\operatorname{Var}_i[\mu_{ij}]`, ``(k,)``.

    ``mu: (n, k)`` with ``n >= 2``. A dimension is an *active unit* if this exceeds :data:`ACTIVE`;
    an inactive one has the same posterior mean for every input, so it tells the decoder nothing.

    Example:
        >>> activity(torch.tensor([[0.0, 1.0], [0.0, -1.0]]))
        tensor([0., 2.])
    """
    checks.floats("mu", mu, "n k")
    if mu.shape[0] < 2:
        raise ValueError(f"activity needs at least two examples, got {mu.shape[0]}")
    return mu.var(dim=0)


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    r"""The KL term per code dimension, averaged over the data, ``(k,)`` nats.

    .. math:: \frac1n \sum_i \tfrac12\big(\mu_{ij}^2 + \sigma_{ij}^2 - 1 - \log\sigma_{ij}^2\big)

    Its sum over ``k`` is the rate :math:`R`.

    Example:
        >>> kl_per_dimension(torch.zeros(3, 2), torch.zeros(3, 2))
        tensor([0., 0.])
    """
    mu, logvar = _encoded(mu, logvar)
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean(dim=0)


def log_aggregate_posterior(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                            chunk: int = 1024) -> torch.Tensor:
    r""":math:`\log q_\phi(z) = \log \frac1n \sum_i \mathcal{N}(z; \mu_i, \operatorname{diag}\sigma_i^2)` for ``z: (m, k)``, ``(m,)``.

    ``chunk`` codes at a time (memory ``chunk * n * k``).

    Example:
        >>> z = torch.zeros(1, 1)                       # two identical components: N(0; 0, 1)
        >>> round(log_aggregate_posterior(z, torch.zeros(2, 1), torch.zeros(2, 1)).item(), 4)
        -0.9189
    """
    mu, logvar = _encoded(mu, logvar)
    checks.floats("z", z, "m k", k=mu.shape[1])
    checks.positive_int("chunk", chunk)
    out = [torch.logsumexp(log_normal(part[:, None], mu, logvar), dim=1)     # (chunk, n) -> (chunk,)
           for part in z.split(chunk)]
    return torch.cat(out) - math.log(mu.shape[0])


class Rate(NamedTuple):
    """The rate and its two parts, nats per example: ``rate = information + marginal_kl``."""
    rate: float
    information: float
    marginal_kl: float


def rate_decomposition(mu: torch.Tensor, logvar: torch.Tensor, *, samples: int = 10,
                       generator: torch.Generator | None = None) -> Rate:
    r"""Split the rate into :math:`I_q(x; z)` and :math:`\mathrm{KL}(q_\phi(z)\,\|\,p(z))` by Monte Carlo.

    With ``samples`` draws :math:`z \sim q_\phi(z \mid x_i)` per example,

    .. math:: I_q(x; z) = \mathbb{E}\big[\log q_\phi(z \mid x_i) - \log q_\phi(z)\big], \qquad
              \mathrm{KL}(q_\phi(z)\,\|\,p(z)) = \mathbb{E}\big[\log q_\phi(z) - \log p(z)\big];

    the rate is the closed-form average KL (:func:`kl_per_dimension` summed). The two parts are
    unbiased estimates whose sum estimates the rate; ``information`` is at most :math:`\log n`.

    Example:
        >>> r = rate_decomposition(torch.zeros(4, 2), torch.zeros(4, 2))
        >>> r.rate, abs(r.information) < 1e-6, abs(r.marginal_kl) < 1e-6
        (0.0, True, True)
    """
    mu, logvar = _encoded(mu, logvar)
    checks.positive_int("samples", samples)
    eps = rng.randn((samples, *mu.shape), generator=generator, device=mu.device, dtype=mu.dtype)
    z = (mu + (0.5 * logvar).exp() * eps).flatten(0, 1)                        # (samples n, k)
    log_q_z_x = log_normal(z, mu.repeat(samples, 1), logvar.repeat(samples, 1))
    log_q_z = log_aggregate_posterior(z, mu, logvar)
    log_p_z = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return Rate(kl_per_dimension(mu, logvar).sum().item(), (log_q_z_x - log_q_z).mean().item(),
                (log_q_z - log_p_z).mean().item())


def prior_hole_mass(mu: torch.Tensor, logvar: torch.Tensor, *, ratio: float = 0.1, n: int = 10_000,
                    generator: torch.Generator | None = None) -> float:
    r"""The prior's probability of the "holes", where the aggregated posterior is under ``ratio`` times the prior.

    .. math:: P_{z \sim p(z)}\big[q_\phi(z) < \text{ratio}\cdot p(z)\big]

    estimated with ``n`` prior draws. Codes drawn there are ones the decoder rarely saw in training.

    Example:
        >>> prior_hole_mass(torch.zeros(3, 2), torch.zeros(3, 2), n=100)     # q(z) = p(z): no holes
        0.0
    """
    mu, logvar = _encoded(mu, logvar)
    checks.positive("ratio", ratio)
    checks.positive_int("n", n)
    z = rng.randn((n, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    log_p_z = log_normal(z, torch.zeros_like(z), torch.zeros_like(z))
    return (log_aggregate_posterior(z, mu, logvar) < log_p_z + math.log(ratio)).double().mean().item()
