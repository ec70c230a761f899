import math

import pytest
import torch
from torch import nn

from companion.data import eight_gaussians, ring_modes
from companion.gan import (ConvDiscriminator, ConvGenerator, Discriminator, GANConfig, Generator,
                           critic_loss, discriminator_loss, generator_loss_nonsaturating,
                           generator_loss_saturating, gradient_penalty, jensen_shannon, mode_coverage,
                           optimal_discriminator, train_gan, wasserstein_generator_loss)


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


def test_jensen_shannon_limits(float64):
    p = torch.tensor([0.2, 0.3, 0.5])
    assert jensen_shannon(p, p, 1.0).item() == pytest.approx(0.0, abs=1e-15)
    q = torch.tensor([0.5, 0.5, 0.0])
    js = jensen_shannon(p, q, 1.0).item()
    assert 0 < js < math.log(2)
    assert js == pytest.approx(jensen_shannon(q, p, 1.0).item())


def test_gradient_penalty_is_zero_for_a_unit_norm_linear_critic_and_positive_otherwise(g, float64):
    critic = nn.Linear(3, 1, bias=True)
    w = torch.randn(1, 3, generator=g)
    real, fake = torch.randn(16, 3, generator=g), torch.randn(16, 3, generator=g)
    with torch.no_grad():
        critic.weight.copy_(w / w.norm())
    score = lambda x: critic(x).squeeze(-1)
    assert gradient_penalty(score, real, fake, generator=g).abs().max() < 1e-12
    with torch.no_grad():
        critic.weight.mul_(3.0)                        # gradient norm 3 everywhere: penalty (3 - 1)^2
    assert torch.allclose(gradient_penalty(score, real, fake, generator=g), torch.full((16,), 4.0))
    penalty = gradient_penalty(score, real, fake, generator=g).mean()
    penalty.backward()                                  # differentiable in the critic's weights
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


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


def test_networks_shapes_and_packing():
    cfg = GANConfig(pack=4)
    d = Discriminator(cfg)
    x = torch.randn(8, 2)
    out = d(x)
    assert out.shape == (2,)
    # The first logit depends on the first four samples only.
    x2 = x.clone()
    x2[4:] += 1.0
    assert torch.equal(d(x2)[0], out[0]) and not torch.equal(d(x2)[1], out[1])
    assert Generator(cfg)(torch.randn(5, cfg.latent_dim)).shape == (5, 2)
    images = ConvGenerator().eval()(torch.randn(4, 16), torch.arange(4))
    assert images.shape == (4, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert ConvDiscriminator()(images, torch.arange(4)).shape == (4,)


def test_train_gan_is_seeded_and_returns_histories():
    def run():
        torch.manual_seed(0)
        cfg = GANConfig(hidden=16, layers=2)
        gen, disc = Generator(cfg), Discriminator(cfg)
        evaluate = lambda G: mode_coverage(G(torch.randn(100, 2, generator=torch.Generator().manual_seed(1))),
                                           ring_modes(), 0.02)
        return train_gan(gen, disc, eight_gaussians(512, seed=0), steps=6, batch_size=64, eval_every=3,
                         evaluate=evaluate, progress=False)

    a, b = run(), run()
    assert a == b
    assert len(a["d_loss"]) == len(a["g_loss"]) == 6 and a["eval_step"] == [3, 6]
    assert len(a["covered"]) == len(a["high_quality"]) == 2


def test_train_gan_plays_wgan_gp_and_conditional_games():
    torch.manual_seed(0)
    cfg = GANConfig(hidden=16, layers=2)
    h = train_gan(Generator(cfg), Discriminator(cfg), eight_gaussians(256, seed=0), loss="wgan-gp",
                  n_critic=2, steps=3, batch_size=32, progress=False)
    assert len(h["d_loss"]) == 3 and all(math.isfinite(v) for v in h["d_loss"])
    x, y = torch.rand(64, 1, 8, 8), torch.arange(64) % 10
    h = train_gan(ConvGenerator(), ConvDiscriminator(), (x, y), steps=2, batch_size=16, progress=False)
    assert len(h["g_loss"]) == 2


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        discriminator_loss(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"shape \(b\)"):
        generator_loss_nonsaturating(torch.zeros(3, 1))
    with pytest.raises(ValueError, match="empty"):
        generator_loss_saturating(torch.zeros(0))
    with pytest.raises(ValueError, match="same shape"):
        optimal_discriminator(torch.ones(3), torch.ones(2))
    with pytest.raises(ValueError, match="non-negative"):
        optimal_discriminator(torch.tensor([-1.0]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="multiple of pack"):
        Discriminator(GANConfig(pack=2))(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="share a shape"):
        gradient_penalty(lambda x: x.sum(1), torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one score per example"):
        gradient_penalty(lambda x: x, torch.zeros(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="need loss in"):
        train_gan(Generator(), Discriminator(), torch.zeros(10, 2), loss="hinge")
    with pytest.raises(ValueError, match="multiple of"):
        train_gan(Generator(), Discriminator(GANConfig(pack=3)), torch.zeros(10, 2), batch_size=8)
    with pytest.raises(ValueError, match=r"shape \(b, latent_dim\)"):
        Generator()(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="std > 0"):
        mode_coverage(torch.zeros(2, 2), ring_modes(), 0.0)
