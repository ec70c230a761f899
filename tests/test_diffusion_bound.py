"""Tests of companion.diffusion_bound: the discretised decoder and the variational bound, against closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion.diffusion_bound import _log_bin_probability, diffusion_nll_bound
from companion.schedules import NoiseSchedule


def test_bin_probabilities_of_the_discrete_decoder_sum_to_one(float64):
    """The 17 bins of the diffusion decoder partition the real line, for any mean and width."""
    levels = torch.arange(17, dtype=torch.float64)
    x0 = levels / 16 * 2 - 1
    for mean, std in [(0.0, 0.02), (-0.93, 0.1), (0.99, 0.5), (3.0, 0.05)]:
        logp = _log_bin_probability(x0, torch.full_like(x0, mean), std, 17)
        assert abs(logp.exp().sum().item() - 1.0) < 1e-9


def test_bin_probability_matches_the_normal_cdf(float64):
    normal = torch.distributions.Normal(0.1, 0.2)
    x0 = torch.tensor([2 / 16 - 1 + 8 / 16 * 2])          # level 9 on [-1, 1] (-1 + 2 * 9 / 16)
    half = 1 / 16
    exact = (normal.cdf(x0 + half) - normal.cdf(x0 - half)).log()
    got = _log_bin_probability(x0, torch.tensor([0.1]), 0.2, 17)
    assert torch.allclose(got, exact, atol=1e-10)


class ZeroNet(torch.nn.Module):
    """Predicts no noise at all: a valid (poor) reverse process."""

    def forward(self, x, t):
        return torch.zeros_like(x)


class KnowsTheImage(torch.nn.Module):
    """The exact denoiser of data that are always one image ``x_star`` on [-1, 1].

    eps = (x_t - sqrt(ab) x*) / sqrt(1 - ab): the noise is known once the image is.
    """

    def __init__(self, schedule, x_star):
        super().__init__()
        self.schedule, self.x_star = schedule, x_star

    def forward(self, x, t):
        ab = self.schedule.at(self.schedule.alpha_bars, t, x)
        return (x - ab.sqrt() * self.x_star) / (1 - ab).sqrt()


def test_the_bound_of_the_exact_denoiser_is_the_prior_term_plus_the_decoder_term(g):
    # Every reverse step then has the posterior's own mean, so all L_{t-1} vanish: what is left is
    # L_T = KL(N(sqrt(ab_T) x, 1 - ab_T) || N(0, 1)) and L_0 = -log of the bin probability under
    # N(x, beta_1), a Gaussian CDF difference (one-sided for the levels 0 and 16). Computed here
    # in numpy from the normal CDF, independently of the module.
    s = NoiseSchedule.linear(50)
    levels = torch.randint(0, 17, (1, 1, 8, 8), generator=g)
    x_star = levels.double() / 16 * 2 - 1
    got = diffusion_nll_bound(KnowsTheImage(s, x_star.float()), s, levels.expand(3, 1, 8, 8), generator=g)
    ab, sigma, half = s.alpha_bars[-1].item(), math.sqrt(s.betas[0].item()), 1 / 16
    prior = 0.5 * (ab * x_star**2 + (1 - ab) - 1 - math.log(1 - ab)).sum().item()
    phi = torch.distributions.Normal(0.0, 1.0).cdf(torch.tensor(half / sigma, dtype=torch.float64)).item()
    edge = (levels == 0) | (levels == 16)
    decoder = -np.where(edge.numpy(), math.log(phi), math.log(2 * phi - 1)).sum()
    assert torch.allclose(got.double(), torch.full((3,), prior + decoder, dtype=torch.float64), atol=1e-3)


def test_stratified_diffusion_bound_is_unbiased_for_the_full_sum():
    schedule = NoiseSchedule(torch.linspace(0.01, 0.3, 8))
    levels = torch.randint(0, 17, (1, 1, 8, 8), generator=torch.Generator().manual_seed(0)).expand(400, 1, 8, 8)
    g = torch.Generator().manual_seed(1)
    full = diffusion_nll_bound(ZeroNet(), schedule, levels, generator=g).double()
    strat = diffusion_nll_bound(ZeroNet(), schedule, levels, timesteps=2, generator=g).double()
    assert full.min() > 0
    se = (full.var() / 400 + strat.var() / 400).sqrt()
    assert abs(full.mean() - strat.mean()) < 4 * se


def test_the_bound_draws_only_from_its_generator_and_restores_the_mode():
    schedule = NoiseSchedule.linear(30)
    net = ZeroNet().train()
    levels = torch.randint(0, 17, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    a = diffusion_nll_bound(net, schedule, levels, timesteps=5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)                                          # the global RNG plays no part
    b = diffusion_nll_bound(net, schedule, levels, timesteps=5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and net.training


def test_bad_input_raises_clear_errors(g):
    schedule = NoiseSchedule(torch.linspace(0.01, 0.3, 10))
    levels = torch.randint(0, 17, (2, 1, 8, 8), generator=g)
    # float intensities and levels above 16 once gave plausible numbers or NaN
    with pytest.raises(ValueError, match="integer grey levels 0..16"):
        diffusion_nll_bound(ZeroNet(), schedule, levels / 16)
    with pytest.raises(ValueError, match=r"grey levels 0..16, got values in \[\d+, 17\]"):
        diffusion_nll_bound(ZeroNet(), schedule, torch.cat([levels, torch.full((1, 1, 8, 8), 17)]))
    with pytest.raises(ValueError, match="torch.Tensor"):
        diffusion_nll_bound(ZeroNet(), schedule, levels.numpy())
    with pytest.raises(ValueError, match="at least one example"):
        diffusion_nll_bound(ZeroNet(), schedule, levels[:0])
    with pytest.raises(ValueError, match="positive divisor of T=10"):
        diffusion_nll_bound(ZeroNet(), schedule, levels, timesteps=3)
