"""The losses of the GAN game and its theory (companion.gan_losses)."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from companion.data import eight_gaussians, ring_modes
from companion.gan_losses import (critic_loss, discriminator_loss, generator_loss_nonsaturating,
                                  generator_loss_saturating, jensen_shannon, mode_coverage,
                                  mode_spread, optimal_discriminator, wasserstein_generator_loss)


def test_losses_equal_hand_computed_binary_cross_entropy(float64):
    real = torch.tensor([2.0, -1.0, 0.0, 30.0])
    fake = torch.tensor([-3.0, 0.5, 0.0, -30.0])
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    expected = -torch.log(d_real) - torch.log(1 - d_fake)
    assert torch.allclose(discriminator_loss(real, fake), expected, atol=1e-12)
    bce = nn.functional.binary_cross_entropy_with_logits
    assert torch.allclose(discriminator_loss(real, fake).mean(),
                          bce(real, torch.ones(4)) + bce(fake, torch.zeros(4)), atol=1e-12)
    assert torch.allclose(generator_loss_saturating(fake), torch.log(1 - d_fake), atol=1e-12)
    assert torch.allclose(generator_loss_nonsaturating(fake), -torch.log(d_fake), atol=1e-12)
    assert torch.allclose(critic_loss(real, fake), fake - real)
    assert torch.allclose(wasserstein_generator_loss(fake), -fake)


def test_losses_stay_finite_where_log_sigmoid_would_overflow():
    huge = torch.tensor([-200.0, 200.0])
    for value in (discriminator_loss(huge, huge), generator_loss_saturating(huge),
                  generator_loss_nonsaturating(huge)):
        assert torch.isfinite(value).all()
    # log(1 - D) for a logit of 200 is -200, not -inf.
    assert generator_loss_saturating(huge)[1].item() == pytest.approx(-200.0)


def test_nonsaturating_gradient_is_larger_where_the_discriminator_rejects_fakes(float64):
    logits = torch.linspace(-8, 8, 33, requires_grad=True)
    (g_sat,) = torch.autograd.grad(generator_loss_saturating(logits).sum(), logits)
    (g_ns,) = torch.autograd.grad(generator_loss_nonsaturating(logits).sum(), logits)
    d = torch.sigmoid(logits.detach())
    assert torch.allclose(g_sat, -d) and torch.allclose(g_ns, -(1 - d))   # d/dl of each loss
    rejected = d < 0.5
    assert (g_ns[rejected].abs() > g_sat[rejected].abs()).all()
    assert g_sat[0].abs() < 1e-3 < 0.99 < g_ns[0].abs()                   # D(G(z)) ~ 3e-4


def test_optimal_discriminator_matches_the_formula_and_maximises_v_on_a_grid(float64):
    x = torch.linspace(-6, 6, 2001)
    dx = (x[1] - x[0]).item()
    normal = lambda mu, s: torch.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))
    p_data, p_g = normal(-1.0, 0.7), normal(1.5, 1.2)
    p_data, p_g = p_data / (p_data.sum() * dx), p_g / (p_g.sum() * dx)   # densities on the grid
    d_star = optimal_discriminator(p_data, p_g)
    assert torch.allclose(d_star, p_data / (p_data + p_g))

    def value(d):
        d = d.clamp(1e-300, 1 - 1e-16)
        return ((p_data * d.log() + p_g * (1 - d).log()).sum() * dx).item()

    best = value(d_star)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):   # random perturbations of D* in logit space never do better
        logit = torch.logit(d_star.clamp(1e-12, 1 - 1e-12)) + 0.5 * torch.randn(x.shape, generator=g, dtype=x.dtype)
        assert value(torch.sigmoid(logit)) < best
    for c in (0.1, 0.5, 0.9):   # nor does any constant discriminator
        assert value(torch.full_like(x, c)) < best
    # V(D*, G) = -log 4 + 2 JSD(p_data || p_g)
    assert best == pytest.approx(-math.log(4) + 2 * jensen_shannon(p_data, p_g, dx).item(), abs=1e-8)


def test_optimal_discriminator_of_counts_divides_as_floats():
    assert torch.equal(optimal_discriminator(torch.tensor([1, 0, 0]), torch.tensor([3, 2, 0])),
                       torch.tensor([0.25, 0.0, 0.5]))


def test_jensen_shannon_limits(float64):
    p = torch.tensor([0.2, 0.3, 0.5])
    assert jensen_shannon(p, p, 1.0).item() == pytest.approx(0.0, abs=1e-15)
    q = torch.tensor([0.5, 0.5, 0.0])
    js = jensen_shannon(p, q, 1.0).item()
    assert 0 < js < math.log(2)
    assert js == pytest.approx(jensen_shannon(q, p, 1.0).item())
    # An independent reference: the entropy form, H(m) - (H(p) + H(q)) / 2.
    h = lambda r: -sum(v * math.log(v) for v in r.tolist() if v > 0)
    assert js == pytest.approx(h((p + q) / 2) - (h(p) + h(q)) / 2, abs=1e-12)


def test_mode_coverage_counts_modes_and_high_quality_samples():
    modes = ring_modes(8, 2.0)
    # For the data itself, P(|x - mode| < 3 std) = 1 - exp(-9/2) in 2-D (a Rayleigh radius).
    data_score = mode_coverage(eight_gaussians(4000, seed=0), modes, 0.02)
    assert data_score["covered"] == 8
    assert data_score["high_quality"] == pytest.approx(1 - math.exp(-4.5), abs=0.006)
    # Every sample on mode 0: one mode covered, all samples high quality.
    collapsed = modes[:1] + 0.02 * torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    assert mode_coverage(collapsed, modes, 0.02)["covered"] == 1
    # Points half-way between neighbouring modes are no mode's samples.
    between = (modes + modes.roll(1, dims=0)) / 2
    assert mode_coverage(between, modes, 0.02) == {"covered": 0, "high_quality": 0.0}


def test_mode_spread_matches_a_numpy_reference_and_separates_collapse_from_distance():
    rng = np.random.default_rng(0)
    modes = ring_modes(8, radius=2.0).double()
    x = rng.normal(size=(500, 2)) * 0.3 + np.array([2.0, 0.0])      # mostly nearest mode 0
    got = mode_spread(torch.from_numpy(x), modes, std=0.02)
    m = modes.numpy()
    dist = np.sqrt(((x[:, None, :] - m[None]) ** 2).sum(-1))        # (n, k)
    share = np.bincount(dist.argmin(1), minlength=8) / len(x)
    share = share[share > 0]
    expected = {"spread": np.sqrt(((x - x.mean(0)) ** 2).sum(1).mean()),
                "distance": np.sort(dist.min(1))[(len(x) - 1) // 2] / 0.02,   # torch's lower median
                "effective_modes": np.exp(-(share * np.log(share)).sum())}
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-9), (key, got[key], value)
    # The data themselves: spread about the radius, every mode equally near, ~1.2 std away.
    ring = mode_spread(eight_gaussians(4000, seed=0), ring_modes(8, radius=2.0), std=0.02)
    assert abs(ring["spread"] - 2.0) < 0.02 and ring["effective_modes"] > 7.9 and 1.0 < ring["distance"] < 1.4
    point = mode_spread(torch.full((50, 2), 0.3), ring_modes(8, radius=2.0), std=0.02)   # collapsed, off the ring
    assert point["spread"] < 1e-6 and point["effective_modes"] == 1.0 and point["distance"] > 50


def test_theory_refuses_nan_instead_of_returning_a_finite_answer():
    # optimal_discriminator returned 1/2 at a NaN; mode_coverage counted a NaN sample as a
    # real one far from every mode; jensen_shannon dropped NaN and negative terms.
    nan = torch.tensor([float("nan"), 1.0])
    with pytest.raises(ValueError, match="p_data holds NaN"):
        optimal_discriminator(nan, torch.ones(2))
    with pytest.raises(ValueError, match="p_g holds NaN"):
        optimal_discriminator(torch.ones(2), torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="q holds NaN"):
        jensen_shannon(torch.ones(2), nan, 1.0)
    with pytest.raises(ValueError, match="p holds negative values"):
        jensen_shannon(torch.tensor([-0.5, 1.5]), torch.ones(2), 1.0)
    with pytest.raises(ValueError, match="dx must be a finite number > 0"):
        jensen_shannon(torch.ones(2), torch.ones(2), float("nan"))
    samples = ring_modes(8, 2.0).clone()
    samples[3] = float("nan")
    with pytest.raises(ValueError, match="samples holds NaN"):
        mode_coverage(samples, ring_modes(8, 2.0), 0.02)
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        mode_coverage(ring_modes(8, 2.0), ring_modes(8, 2.0), float("nan"))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        discriminator_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(b\)"):
        generator_loss_nonsaturating(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="at least one example"):
        generator_loss_saturating(torch.zeros(0))
    with pytest.raises(ValueError, match="float logits"):
        critic_loss(torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"fake_scores of shape \(b\)"):
        wasserstein_generator_loss(torch.tensor(1.0))
    with pytest.raises(ValueError, match="torch.Tensor, got ndarray"):
        discriminator_loss(np.zeros(2), np.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        optimal_discriminator(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        optimal_discriminator(torch.tensor([-1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="std must be a finite number > 0"):
        mode_coverage(torch.zeros(2, 2), ring_modes(), 0.0)
    with pytest.raises(ValueError, match=r"modes of shape \(k, d\) with d=2"):
        mode_coverage(torch.zeros(2, 2), torch.zeros(8, 3), 0.1)
    with pytest.raises(ValueError, match="samples to hold at least one example"):
        mode_coverage(torch.zeros(0, 2), ring_modes(), 0.1)
