r"""The losses of the GAN game and its theory: the optimal discriminator, JSD, mode coverage.

Losses take logits (or a critic's scores) ``(b,)`` and return one value per example,
``(b,)``, through ``softplus``, so no probability is rounded to 0 before its
logarithm; the caller takes ``.mean()``. :func:`optimal_discriminator` and
:func:`jensen_shannon` state Proposition 1 and Theorem 1 of Goodfellow et al. (2014)
on densities; :func:`mode_coverage` is the metric of VEEGAN and PacGAN, and
:func:`mode_spread` tells its two failures apart (collapse, or never reaching the data). The loop that
plays the game is :func:`companion.gan_training.train_gan`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from companion import checks

__all__ = ["discriminator_loss", "generator_loss_saturating", "generator_loss_nonsaturating",
           "critic_loss", "wasserstein_generator_loss", "optimal_discriminator", "jensen_shannon",
           "mode_coverage", "mode_spread"]


# --- losses: logits in, one value per example out --------------------------------

def _check_logits(**logits: object) -> None:
    """Float tensors ``(b,)`` of one shape. No pass over the values (the game calls the losses
    every step): a NaN logit gives a NaN loss, which is visible, not a finite wrong answer."""
    for name, t in logits.items():
        checks.tensor(name, t, "b")
        if not t.is_floating_point():
            raise ValueError(f"expected {name} to be float logits, got {t.dtype}")
    if len({t.shape for t in logits.values()}) > 1:
        shapes = [tuple(t.shape) for t in logits.values()]
        raise ValueError(f"logits must have the same shape (b,), got {shapes}")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    r"""Binary cross-entropy of the discriminator, ``(b,)``: real labelled 1, fake 0.

    .. math:: -\log D(x) - \log(1 - D(G(z)))
              = \operatorname{softplus}(-\ell_\text{real})
              + \operatorname{softplus}(\ell_\text{fake})

    Its mean is :math:`-V(D, G)` estimated on the batch, so minimising it is
    the discriminator's :math:`\max_D V`.

    Example:
        >>> discriminator_loss(torch.zeros(2), torch.zeros(2))   # D = 1/2: 2 log 2
        tensor([1.3863, 1.3863])
    """
    _check_logits(real_logits=real_logits, fake_logits=fake_logits)
    return F.softplus(-real_logits) + F.softplus(fake_logits)


def generator_loss_saturating(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The minimax generator loss :math:`\log(1 - D(G(z)))`, ``(b,)``.

    It equals :math:`-\operatorname{softplus}(\ell)`; its derivative in the logit,
    :math:`-D(G(z))`, vanishes when the discriminator rejects the fakes confidently.

    Example:
        >>> generator_loss_saturating(torch.tensor([0.0, -30.0]))   # log 1/2, log(1 - 1e-13)
        tensor([-6.9315e-01, -9.3576e-14])
    """
    _check_logits(fake_logits=fake_logits)
    return -F.softplus(fake_logits)


def generator_loss_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    r"""The non-saturating generator loss :math:`-\log D(G(z))`, ``(b,)``.

    It equals :math:`\operatorname{softplus}(-\ell)`; its derivative in the logit,
    :math:`-(1 - D(G(z)))`, is near :math:`-1` where the saturating one vanishes.

    Example:
        >>> generator_loss_nonsaturating(torch.tensor([0.0, -30.0]))   # log 2, about 30
        tensor([ 0.6931, 30.0000])
    """
    _check_logits(fake_logits=fake_logits)
    return F.softplus(-fake_logits)


def critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The Wasserstein critic loss, ``(b,)``: :math:`f(G(z)) - f(x)` (Arjovsky et al., 2017).

    Minus its mean estimates :math:`W_1(p_\text{data}, p_g)` if :math:`f` is 1-Lipschitz.

    Example:
        >>> critic_loss(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5]))
        tensor([-0.5000, -1.5000])
    """
    _check_logits(real_scores=real_scores, fake_scores=fake_scores)
    return fake_scores - real_scores


def wasserstein_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    r"""The Wasserstein generator loss, ``(b,)``: :math:`-f(G(z))`.

    Example:
        >>> wasserstein_generator_loss(torch.tensor([0.5, -1.0]))
        tensor([-0.5000,  1.0000])
    """
    _check_logits(fake_scores=fake_scores)
    return -fake_scores


# --- theory and measurement -----------------------------------------------------

def _densities(**densities: object) -> None:
    """Tensors of one shape holding finite, non-negative density values."""
    for name, p in densities.items():
        checks.finite(name, checks.tensor(name, p))
        if bool((p < 0).any()):
            raise ValueError(f"{name} holds negative values: densities must be non-negative")
    shapes = {name: tuple(p.shape) for name, p in densities.items()}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the densities must have the same shape, got {shapes}")


def optimal_discriminator(p_data: torch.Tensor, p_g: torch.Tensor) -> torch.Tensor:
    r"""The best discriminator against a fixed generator (Goodfellow et al. 2014, Prop. 1).

    .. math:: D^*(x) = \frac{p_\text{data}(x)}{p_\text{data}(x) + p_g(x)}

    ``p_data``, ``p_g``: the densities at the same points (any shape, the same for both,
    finite and non-negative). Where both are 0 any value is optimal; we return 1/2 there.

    Example:
        >>> optimal_discriminator(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 0.0]))
        tensor([0.5000, 0.0000, 0.5000])
    """
    _densities(p_data=p_data, p_g=p_g)
    if not p_data.is_floating_point():                   # counts: divide as floats
        p_data = p_data.to(torch.get_default_dtype())
    total = p_data + p_g
    return torch.where(total > 0, p_data / total.clamp(min=torch.finfo(total.dtype).tiny), 0.5)


def jensen_shannon(p: torch.Tensor, q: torch.Tensor, dx: float) -> torch.Tensor:
    r"""Jensen-Shannon divergence (nats) of two densities on a regular grid ``(n,)``.

    .. math:: \operatorname{JSD}(p \,\|\, q) = \tfrac12 \operatorname{KL}(p \,\|\, m)
              + \tfrac12 \operatorname{KL}(q \,\|\, m), \quad m = \tfrac12 (p + q)

    ``dx`` is the grid spacing. The result lies in :math:`[0, \log 2]` for densities
    that integrate to 1 on the grid.

    Example:
        >>> p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
        >>> torch.isclose(jensen_shannon(p, q, 1.0), torch.log(torch.tensor(2.0)))
        tensor(True)
    """
    checks.tensor("p", p, "n")
    _densities(p=p, q=q)
    dx = checks.positive("dx", dx)
    m = (p + q) / 2
    kl_pm = torch.where(p > 0, p * (p / m).log(), 0.0).sum() * dx
    kl_qm = torch.where(q > 0, q * (q / m).log(), 0.0).sum() * dx
    return (kl_pm + kl_qm) / 2


@torch.no_grad()
def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    r"""Modes covered and share of high-quality samples (the metric of VEEGAN and PacGAN).

    A sample is *high quality* if it lies within 3 ``std`` of its nearest mode; a mode
    is *covered* if some sample lies within 3 ``std`` of it. ``samples: (n, d)``,
    ``modes: (k, d)`` (moved to the samples' device). Returns ``covered`` (0..k) and
    ``high_quality`` (a fraction). Samples that are NaN or infinite are an error, not
    samples far from every mode.

    Example:
        >>> modes = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> mode_coverage(torch.tensor([[0.01, 0.0], [0.5, 0.5]]), modes, std=0.02)
        {'covered': 1, 'high_quality': 0.5}
    """
    checks.finite("samples", checks.tensor("samples", samples, "n d"))
    checks.finite("modes", checks.tensor("modes", modes, "k d", d=samples.shape[1]))
    std = checks.positive("std", std)
    close = torch.cdist(samples.double(), modes.to(samples.device).double()) < 3 * std    # (n, k)
    return {"covered": int(close.any(0).sum()), "high_quality": close.any(1).double().mean().item()}


@torch.no_grad()
def mode_spread(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    r"""Where the samples sit: what tells mode collapse from a generator that never reached the data.

    Zero modes covered fits both; these three numbers separate them. ``samples: (n, d)``,
    ``modes: (k, d)``; ``std`` is the modes' standard deviation.

    * ``spread``: :math:`\sqrt{\operatorname{tr} \operatorname{Cov}(x)}`, the root mean
      squared distance of the samples to their mean (compare it with the data's);
    * ``distance``: the median distance of a sample to its nearest mode, in units of ``std``
      (about 1.2 for a 2-D Gaussian mode's own samples);
    * ``effective_modes``: :math:`\exp H(\pi)`, where :math:`\pi_j` is the share of
      samples whose nearest mode is :math:`j`: ``k`` when they split evenly, 1 when one
      mode is nearest to all of them.

    A collapsed generator has a small ``spread`` and few effective modes, wherever it sits;
    one that has not reached the data has a ``distance`` of many ``std``.

    Example:
        >>> modes = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
        >>> mode_spread(torch.tensor([[0.0, 1.0], [4.0, 1.0]]), modes, std=0.5)
        {'spread': 2.0, 'distance': 2.0, 'effective_modes': 2.0}
    """
    checks.finite("samples", checks.tensor("samples", samples, "n d"))
    checks.finite("modes", checks.tensor("modes", modes, "k d", d=samples.shape[1]))
    std = checks.positive("std", std)
    x = samples.double()
    nearest = torch.cdist(x, modes.to(samples.device).double()).min(dim=1)     # (n,) distances, ids
    share = torch.bincount(nearest.indices, minlength=modes.shape[0]).double() / x.shape[0]
    entropy = -torch.where(share > 0, share * share.log(), 0.0).sum()          # H(pi), nats
    spread = (x - x.mean(dim=0)).pow(2).sum(dim=1).mean().sqrt()                # sqrt(tr Cov), 1/n
    return {"spread": spread.item(), "distance": nearest.values.median().item() / std,
            "effective_modes": entropy.exp().item()}
