r"""The variational bound of a diffusion model on the negative log-likelihood of grey levels, in nats.

A DDPM is a latent-variable model with latents :math:`x_{1:T}`, so, as for a VAE,
:math:`-\log p_\theta(x_0)` has an upper bound that is a sum of KL divergences
(Ho et al. 2020, eq. 5):

.. math:: -\log P(x_0) \le \underbrace{\mathrm{KL}(q(x_T \mid x_0) \,\|\, \mathcal{N}(0, I))}_{L_T}
          + \sum_{t=2}^{T} \underbrace{\mathbb{E}_q\, \mathrm{KL}(q(x_{t-1} \mid x_t, x_0) \,\|\,
          p_\theta(x_{t-1} \mid x_t))}_{L_{t-1}}
          \underbrace{- \mathbb{E}_q \log p_\theta(x_0 \mid x_1)}_{L_0} .

On data of ``levels`` integer grey levels the last term is a Gaussian integrated
over each level's bin (a discretised decoder, Ho et al. 2020, eq. 13), so the bound
is on the probability of the levels themselves and comparable with the other
families' negative log-likelihoods in :mod:`companion.compare`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from companion import checks, rng, utils
from companion.data import DIGIT_LEVELS
from companion.diffusion import _placement, predict_x0, q_posterior, q_sample
from companion.schedules import NoiseSchedule

__all__ = ["diffusion_nll_bound"]


def _log_bin_probability(x0: torch.Tensor, mean: torch.Tensor, std: float, levels: int) -> torch.Tensor:
    r""":math:`\log \int_{\text{bin}(x_0)} \mathcal{N}(u; \mu, \sigma^2)\,du` per entry, on [-1, 1] with ``levels`` bins.

    The outer bins stretch to :math:`\pm\infty` (Ho et al. 2020, eq. 13). Computed in
    float64 from :math:`\log\Phi`, on the side of the Gaussian where the tail is small.
    """
    half = 1.0 / (levels - 1)                                   # half a bin on the [-1, 1] scale
    x0, mean = x0.double(), mean.double()
    lo = torch.where(x0 <= -1 + half / 2, -math.inf, (x0 - half - mean) / std)
    hi = torch.where(x0 >= 1 - half / 2, math.inf, (x0 + half - mean) / std)
    # P = Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi); use the form whose terms are not both near 1
    flip = lo > 0
    a, c = torch.where(flip, -hi, lo), torch.where(flip, -lo, hi)      # P = Phi(c) - Phi(a), a < c
    log_c, log_a = torch.special.log_ndtr(c), torch.special.log_ndtr(a)
    return log_c + torch.log1p(-torch.exp(log_a - log_c))


def _timesteps(T: int, b: int, timesteps: int | None,
               generator: torch.Generator | None) -> tuple[int, list[torch.Tensor]]:
    """The steps to evaluate, ``(b,)`` each on the CPU, and the weight of each (the stratum's size)."""
    if timesteps is None:
        return 1, [torch.full((b,), t, dtype=torch.int64) for t in range(T)]
    if not isinstance(timesteps, int) or isinstance(timesteps, bool) or timesteps < 1 or T % timesteps:
        raise ValueError(f"timesteps must be a positive divisor of T={T} (or None: all), got {timesteps!r}")
    strata = T // timesteps
    return strata, [k * strata + rng.randint(0, strata, (b,), generator=generator) for k in range(timesteps)]


@torch.no_grad()
def diffusion_nll_bound(net: nn.Module, schedule: NoiseSchedule, x: torch.Tensor, *,
                        levels: int = DIGIT_LEVELS, timesteps: int | None = None, clip: float | None = 1.0,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    r"""The DDPM variational bound on :math:`-\log P(x)` for integer grey levels ``x: (b, ...)``, ``(b,)`` nats.

    ``x`` holds levels ``0 .. levels-1``, which the network sees on [-1, 1]. The
    reverse steps use the posterior variance :math:`\tilde\beta_t` and the mean
    :math:`\tilde\mu_t(\hat x_0, x_t)` (:math:`\hat x_0` clipped to ``[-clip, clip]``), so
    each :math:`L_{t-1}` is :math:`\lVert \tilde\mu_t(x_0, x_t) - \tilde\mu_t(\hat x_0, x_t)\rVert^2 / 2\tilde\beta_t`;
    :math:`L_0` is a Gaussian of variance :math:`\beta_1` integrated over the bin of each
    level and :math:`L_T` is in closed form. ``timesteps=None`` sums all ``T`` terms with
    one noise draw each; ``timesteps = K`` draws one step per stratum of ``T / K`` steps
    and weights it by ``T / K`` (unbiased, ``K`` network calls per example instead of ``T``).

    Example:
        >>> from companion.denoisers import TinyUNet, UNetConfig
        >>> net, s = TinyUNet(UNetConfig(channels=8, num_classes=0)), NoiseSchedule.linear(40)
        >>> diffusion_nll_bound(net, s, torch.randint(0, 17, (3, 1, 8, 8)), timesteps=4).shape
        torch.Size([3])
    """
    x = checks.levels("x", x, levels=levels)
    if x.dim() < 2:
        raise ValueError(f"expected x to be a batch of images (b, ...), got shape {tuple(x.shape)}")
    device, dtype = _placement(net, like=x)
    if isinstance(net, nn.Module):
        checks.same_device("x", x, net)
    x0 = x.to(dtype) / (levels - 1) * 2 - 1                             # levels -> [-1, 1]
    b, T = x0.shape[0], schedule.T
    strata, ts = _timesteps(T, b, timesteps, generator)
    x0_64 = x0.cpu().double()                      # the sums in float64 on the CPU (MPS has no float64)
    ab_last = schedule.alpha_bars[-1].item()                            # L_T, in closed form
    total = 0.5 * ((ab_last * x0_64 ** 2) + (1 - ab_last) - 1 - math.log(1 - ab_last)).flatten(1).sum(1)
    std0 = math.sqrt(schedule.betas[0].item())
    with utils.mode(net, training=False):
        for t in ts:
            t = t.to(device)
            noise = rng.randn(x0.shape, generator=generator, device=device, dtype=dtype)
            xt = q_sample(x0, t, noise, schedule)
            x0_hat = predict_x0(xt, t, net(xt, t), schedule)
            if clip is not None:
                x0_hat = x0_hat.clamp(-clip, clip)
            mean_q, var = q_posterior(x0, xt, t, schedule)
            mean_p, _ = q_posterior(x0_hat, xt, t, schedule)
            gap, var = (mean_q - mean_p).cpu().double(), var.cpu().double()
            kl = (gap ** 2 / (2 * var.clamp(min=1e-300))).flatten(1).sum(1)
            decoder = -_log_bin_probability(x0_64, x0_hat.cpu(), std0, levels).flatten(1).sum(1)
            total += strata * torch.where(t.cpu() == 0, decoder, kl)
    return total.to(device=device, dtype=dtype)
