"""What the codes carry: the aggregated posterior against torch.distributions' mixture, the rate split
against its definition, active units, and prior holes against a grid integral."""
import math

import pytest
import torch

from companion.vae_latents import (activity, kl_per_dimension, log_aggregate_posterior, prior_hole_mass,
                                   rate_decomposition)


def _encoded(n: int = 30, k: int = 2, scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, k, generator=g), -1.0 - torch.rand(n, k, generator=g)


def _mixture(mu: torch.Tensor, logvar: torch.Tensor) -> torch.distributions.Distribution:
    components = torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1)
    weights = torch.distributions.Categorical(logits=torch.zeros(mu.shape[0], dtype=mu.dtype))
    return torch.distributions.MixtureSameFamily(weights, components)


def test_log_aggregate_posterior_is_the_mixture_density(float64):
    mu, logvar = _encoded()
    z = torch.randn(50, 2, generator=torch.Generator().manual_seed(1))
    expected = _mixture(mu, logvar).log_prob(z)
    assert torch.allclose(log_aggregate_posterior(z, mu, logvar, chunk=7), expected, atol=1e-10)


def test_rate_splits_into_information_and_marginal_kl(float64):
    mu, logvar = _encoded(n=20)
    r = rate_decomposition(mu, logvar, samples=4000, generator=torch.Generator().manual_seed(2))
    # the rate against torch.distributions' KL, then the two parts against direct Monte Carlo
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    exact_rate = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1).mean()
    assert r.rate == pytest.approx(exact_rate.item(), abs=1e-10)
    assert kl_per_dimension(mu, logvar).sum().item() == pytest.approx(r.rate, abs=1e-10)
    g = torch.Generator().manual_seed(3)
    draws = (mu + (0.5 * logvar).exp() * torch.randn(2000, *mu.shape, generator=g)).reshape(-1, 2)
    marginal = (_mixture(mu, logvar).log_prob(draws)
                - torch.distributions.Normal(0.0, 1.0).log_prob(draws).sum(1)).mean()
    assert r.marginal_kl == pytest.approx(marginal.item(), abs=0.03)
    assert r.information + r.marginal_kl == pytest.approx(r.rate, abs=0.05)
    assert 0 < r.information <= math.log(20)


def test_information_is_log_n_for_separated_codes_and_zero_for_identical_ones(float64):
    mu = 50.0 * torch.arange(10, dtype=torch.float64)[:, None].expand(10, 2)    # far apart, sigma = 0.1
    separated = rate_decomposition(mu, torch.full((10, 2), math.log(0.01)), samples=20)
    assert separated.information == pytest.approx(math.log(10), abs=1e-6)
    same = rate_decomposition(torch.ones(10, 2), torch.full((10, 2), -1.0), samples=20)
    assert same.information == pytest.approx(0.0, abs=1e-10)
    assert same.marginal_kl == pytest.approx(same.rate, abs=0.3)


def test_activity_is_burdas_covariance_of_the_posterior_mean(float64):
    mu = torch.stack([torch.full((5,), 0.3), torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])], dim=1)
    a = activity(mu)
    assert a[0] == 0 and a[1] == pytest.approx(2.5)          # unbiased variance of 0..4
    assert torch.allclose(a, torch.tensor([mu[:, j].var().item() for j in range(2)]))


def test_prior_hole_mass_against_a_grid(float64):
    """1-D: q(z) = (N(-2, 0.3^2) + N(2, 0.3^2)) / 2; the holes' prior mass by summing on a grid."""
    mu, logvar = torch.tensor([[-2.0], [2.0]]), torch.full((2, 1), math.log(0.09))
    grid = torch.linspace(-8, 8, 160_001)[:, None]
    prior = torch.distributions.Normal(0.0, 1.0)
    hole = _mixture(mu, logvar).log_prob(grid) < prior.log_prob(grid[:, 0]) + math.log(0.1)
    expected = (prior.log_prob(grid[:, 0]).exp() * hole).sum() * (grid[1, 0] - grid[0, 0])
    estimate = prior_hole_mass(mu, logvar, ratio=0.1, n=200_000, generator=torch.Generator().manual_seed(4))
    assert estimate == pytest.approx(expected.item(), abs=4 * math.sqrt(0.25 / 200_000))
    assert prior_hole_mass(torch.zeros(3, 1), torch.zeros(3, 1), n=1000) == 0.0


def test_bad_arguments_raise_clear_errors():
    mu, logvar = torch.zeros(4, 2), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="logvar"):
        kl_per_dimension(mu, torch.zeros(4, 3))
    with pytest.raises(ValueError, match="z"):
        log_aggregate_posterior(torch.zeros(5, 3), mu, logvar)
    with pytest.raises(ValueError, match="at least two"):
        activity(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="samples must be a positive int"):
        rate_decomposition(mu, logvar, samples=0)
    with pytest.raises(ValueError, match="ratio"):
        prior_hole_mass(mu, logvar, ratio=0.0)
