import math
import time

import numpy as np
import pytest
import torch

from companion.denoisers import TinyUNet, UNetConfig
from companion.diffusion import (NoiseSchedule, ddim_sample, ddim_step, ddim_timesteps, ddpm_loss, ddpm_sample,
                                 guided_eps, inpaint, predict_x0, q_posterior, q_sample, x0_estimate)

MU, STD = torch.tensor([1.0, -2.0]), 0.5


class GaussianOracle(torch.nn.Module):
    r"""The exact noise predictor for data N(MU, STD^2 I): E[eps | x_t] in closed form.

    x_t ~ N(sqrt(ab) MU, v I) with v = ab STD^2 + 1 - ab, and eps given x_t has mean
    sqrt(1 - ab) (x_t - sqrt(ab) MU) / v. Labels shift the mean, so guidance can be tested.
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def forward(self, x, t, y=None):
        ab = self.schedule.at(self.schedule.alpha_bars, t, x)
        mu = MU.to(x) if y is None else MU.to(x) + (y.to(x) + 1)[:, None]
        v = ab * STD**2 + 1 - ab
        return (1 - ab).sqrt() * (x - ab.sqrt() * mu) / v


@pytest.mark.parametrize("make", [NoiseSchedule.linear, NoiseSchedule.cosine])
def test_alpha_bars_are_the_product_of_alphas(make, float64):
    s = make(300)
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.allclose(s.alpha_bars, torch.tensor(np.cumprod(s.alphas.numpy())), rtol=1e-12)
    assert torch.allclose(s.alpha_bars_prev[1:], s.alpha_bars[:-1]) and s.alpha_bars_prev[0] == 1
    assert (s.alpha_bars.diff() < 0).all() and (s.snr().diff() < 0).all()


def test_linear_schedule_matches_an_independent_computation_of_ho_et_al():
    # Ho et al. 2020, Sec. 4: T = 1000, beta linear from 1e-4 to 0.02. Computed here in
    # numpy through log1p, a different path from the module's cumprod. (diffusers'
    # DDPMScheduler(beta_schedule="linear").alphas_cumprod would be a third; it is not a
    # dependency of the course.)
    s = NoiseSchedule.linear(1000)
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)
    alpha_bars = np.exp(np.cumsum(np.log1p(-betas)))
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-12)
    np.testing.assert_allclose(s.alpha_bars.numpy(), alpha_bars, rtol=1e-10)
    # the well-known end point: sqrt(alpha_bar_T) ~ 0.0064, almost no signal left
    assert s.alpha_bars[-1].sqrt().item() == pytest.approx(0.00635, abs=5e-5)
    # rescaled to T = 200 steps (Nichol & Dhariwal 2021): betas times 1000 / T
    np.testing.assert_allclose(NoiseSchedule.linear(200).betas.numpy(), np.linspace(5e-4, 0.1, 200), rtol=1e-12)


def test_cosine_schedule_follows_its_closed_form():
    T, s_ = 1000, 0.008
    s = NoiseSchedule.cosine(T)
    t = np.arange(1, T + 1)
    f = np.cos((t / T + s_) / (1 + s_) * np.pi / 2) ** 2 / np.cos(s_ / (1 + s_) * np.pi / 2) ** 2
    # equal wherever beta was not clipped (only the very last steps are)
    unclipped = s.betas.numpy() < 0.999
    assert unclipped[: T - 5].all()
    np.testing.assert_allclose(s.alpha_bars.numpy()[unclipped], f[unclipped], rtol=1e-9)


def test_q_sample_has_the_closed_form_marginal_of_the_simulated_chain(g, float64):
    s = NoiseSchedule.linear(100)
    x0 = torch.tensor([1.5, -0.5, 0.0])
    n, t = 40_000, 60
    # the chain: x_k = sqrt(1 - beta_k) x_{k-1} + sqrt(beta_k) z, for k = 0..t
    x = x0.expand(n, 3).clone()
    for k in range(t + 1):
        x = (1 - s.betas[k]).sqrt() * x + s.betas[k].sqrt() * torch.randn(n, 3, generator=g)
    jump = q_sample(x0.expand(n, 3), torch.full((n,), t), torch.randn(n, 3, generator=g), s)
    ab = s.alpha_bars[t]
    for sample in (x, jump):
        assert torch.allclose(sample.mean(0), ab.sqrt() * x0, atol=0.02)
        assert torch.allclose(sample.var(0), (1 - ab).expand(3), rtol=0.03)


def test_q_posterior_matches_gaussian_conditioning(g, float64):
    # q(x_{t-1} | x_t, x0) from Bayes' rule with two Gaussians: the prior
    # N(sqrt(ab_{t-1}) x0, 1 - ab_{t-1}) and the likelihood N(x_t; sqrt(alpha_t) x_{t-1}, beta_t).
    s = NoiseSchedule.linear(50)
    x0, xt = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    t = torch.tensor([1, 5, 17, 30, 48, 49])
    ab_prev, alpha, beta = s.alpha_bars_prev[t, None], s.alphas[t, None], s.betas[t, None]
    precision = 1 / (1 - ab_prev) + alpha / beta
    mean = (ab_prev.sqrt() * x0 / (1 - ab_prev) + alpha.sqrt() * xt / beta) / precision
    got_mean, got_var = q_posterior(x0, xt, t, s)
    assert torch.allclose(got_mean, mean, atol=1e-10)
    assert torch.allclose(got_var, 1 / precision, atol=1e-12)
    # step 0 (the first step of the chain): the posterior is x0 itself
    m0, v0 = q_posterior(x0[:1], xt[:1], torch.tensor([0]), s)
    assert torch.allclose(m0, x0[:1]) and v0.item() == 0


def test_predict_x0_inverts_q_sample(g, float64):
    s = NoiseSchedule.cosine(100)
    x0, eps = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    t = torch.randint(0, 90, (8,), generator=g)
    assert torch.allclose(predict_x0(q_sample(x0, t, eps, s), t, eps, s), x0, atol=1e-8)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_samplers_with_the_exact_denoiser_recover_a_gaussian(sampler, g):
    s = NoiseSchedule.linear(1000)
    oracle = GaussianOracle(s)
    if sampler == "ddpm":
        x = ddpm_sample(oracle, (20_000, 2), s, generator=g)
    else:
        x = ddim_sample(oracle, (20_000, 2), s, steps=250, generator=g)
    assert torch.allclose(x.mean(0), MU, atol=0.02), x.mean(0)
    assert torch.allclose(x.std(0), torch.full((2,), STD), atol=0.015), x.std(0)


def test_few_sampling_steps_shrink_the_spread_even_with_the_exact_denoiser(g):
    # Each DDIM step uses the *expected* noise; with coarse steps the sample
    # contracts towards conditional means (Cauchy-Schwarz on the step's coefficient).
    s = NoiseSchedule.linear(100)
    oracle = GaussianOracle(s)
    noise = torch.randn(20_000, 2, generator=g)
    spread = [ddim_sample(oracle, (20_000, 2), s, steps, noise=noise).std(0).mean().item() for steps in (5, 10, 25, 100)]
    assert spread == sorted(spread) and spread[-1] < STD + 0.01 and spread[0] < 0.8 * STD


def test_ddim_with_eta_zero_is_deterministic_given_the_noise(g):
    s = NoiseSchedule.linear(100)
    net = TinyUNet(UNetConfig(channels=8, num_classes=0))
    noise = torch.randn(3, 1, 8, 8, generator=g)
    a = ddim_sample(net, (3, 1, 8, 8), s, 5, noise=noise, generator=torch.Generator().manual_seed(1))
    b = ddim_sample(net, (3, 1, 8, 8), s, 5, noise=noise, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    c = ddim_sample(net, (3, 1, 8, 8), s, 5, eta=1.0, noise=noise, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)


def test_ddim_with_eta_one_and_every_step_is_the_ddpm_step(g, float64):
    s = NoiseSchedule.linear(50)
    x0, x, eps = torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g), torch.randn(4, 2, generator=g)
    t = 7
    x = q_sample(x0, torch.full((4,), t), eps, s)
    mean, var = q_posterior(x0, x, torch.full((4,), t), s)
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    step = ddim_step(x, eps, t, t - 1, s, eta=1.0, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(step, mean + var.sqrt() * z, atol=1e-10)


def test_samplers_keep_shapes_and_return_trajectories(g):
    s = NoiseSchedule.linear(30)
    net = TinyUNet(UNetConfig(channels=8))
    y = torch.arange(4)
    assert ddpm_sample(net, (4, 1, 8, 8), s, labels=y, guidance_scale=2.0, generator=g).shape == (4, 1, 8, 8)
    path = ddim_sample(net, (4, 1, 8, 8), s, 3, labels=y, generator=g, return_trajectory=True)
    assert path.shape == (4, 4, 1, 8, 8)
    assert ddpm_sample(net, (2, 1, 8, 8), s, generator=g, return_trajectory=True).shape == (31, 2, 1, 8, 8)
    assert ddim_timesteps(200, 10)[0] == 199 and ddim_timesteps(200, 10)[-1] == 0
    assert ddim_timesteps(30, 30) == list(range(29, -1, -1))


def test_guidance_interpolates_and_extrapolates_the_two_predictions(g):
    s = NoiseSchedule.linear(30)
    oracle = GaussianOracle(s)
    x, t, y = torch.randn(5, 2, generator=g), torch.full((5,), 4), torch.arange(5)
    uncond, cond = oracle(x, t, torch.full_like(y, -1)), oracle(x, t, y)
    assert torch.allclose(guided_eps(oracle, x, t, y, 0.0), uncond)
    assert torch.allclose(guided_eps(oracle, x, t, y, 1.0), cond)
    assert torch.allclose(guided_eps(oracle, x, t, y, 3.0), uncond + 3 * (cond - uncond), atol=1e-6)


def test_ddpm_loss_is_the_noise_regression_with_label_dropout(g):
    s = NoiseSchedule.linear(30)
    seen = {}

    def zero_model(x, t, y=None):
        seen["y"] = y
        return torch.zeros_like(x)

    x0 = torch.randn(4000, 2, generator=g)
    loss = ddpm_loss(zero_model, x0, s, generator=g)
    assert loss.shape == (4000,) and loss.mean().item() == pytest.approx(1.0, abs=0.05)  # E|eps|^2 / d
    labels = torch.zeros(4000, dtype=torch.int64)
    ddpm_loss(zero_model, x0, s, labels=labels, p_uncond=0.25, generator=g)
    assert (seen["y"] == -1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    ddpm_loss(zero_model, x0, s, labels=labels, p_uncond=0.0, generator=g)
    assert (seen["y"] == 0).all()


def test_inpaint_keeps_the_known_pixels(g):
    s = NoiseSchedule.linear(30)
    net = TinyUNet(UNetConfig(channels=8, num_classes=0))
    x = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :] = 1
    out = inpaint(net, x, mask, s, 5, generator=g)
    assert torch.equal(out[..., :4, :], x[..., :4, :]) and not torch.allclose(out[..., 4:, :], x[..., 4:, :])


def test_x0_estimate_is_exact_for_the_true_noise_and_fast_enough_for_a_widget(g):
    s = NoiseSchedule.linear(100)
    x0, noise = torch.randn(1, 2, generator=g), torch.randn(1, 2, generator=g)
    xt, x0_hat = x0_estimate(lambda x, t: noise, x0, 50, noise, s)
    assert torch.allclose(x0_hat, x0, atol=1e-5)
    net = TinyUNet(UNetConfig())
    img = torch.rand(1, 1, 8, 8, generator=g)
    start = time.perf_counter()
    x0_estimate(net, img, 60, torch.randn(1, 1, 8, 8, generator=g), s, labels=torch.tensor([3]))
    assert time.perf_counter() - start < 0.1


def test_bad_input_raises_clear_errors():
    s = NoiseSchedule.linear(10, 1e-3, 0.2)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        q_sample(x, torch.tensor([0, 5, 10]), torch.zeros(3, 2), s)
    with pytest.raises(ValueError, match=r"in \[0, 10\)"):
        q_posterior(x, x, torch.tensor([-1, 0, 0]), s)
    with pytest.raises(ValueError, match="int64"):
        q_sample(x, torch.tensor([0.0, 1.0, 2.0]), torch.zeros(3, 2), s)
    with pytest.raises(ValueError, match="shape"):
        q_sample(x, torch.tensor([0, 1]), torch.zeros(3, 2), s)
    with pytest.raises(ValueError, match="noise of shape"):
        q_sample(x, torch.tensor([0, 1, 2]), torch.zeros(3, 3), s)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="T must be"):
        NoiseSchedule.linear(1)
    with pytest.raises(ValueError, match="T > 20"):
        NoiseSchedule.linear(10)
    with pytest.raises(ValueError, match="steps must be"):
        ddim_sample(lambda x, t: x, (2, 2), s, steps=11)
    with pytest.raises(ValueError, match="noise of shape"):
        ddpm_sample(lambda x, t: x, (2, 2), s, noise=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="labels"):
        ddim_sample(lambda x, t, y=None: x, (2, 2), s, 2, labels=torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="t_prev"):
        ddim_step(x, x, 3, 5, s)
    with pytest.raises(ValueError, match="p_uncond"):
        ddpm_loss(lambda x, t, y=None: x, x, s, labels=torch.zeros(3, dtype=torch.int64), p_uncond=1.5)
    with pytest.raises(ValueError, match="broadcast"):
        inpaint(lambda x, t: x, torch.zeros(2, 1, 8, 8), torch.ones(3, 1, 8, 8), s, 2)
    assert math.isfinite(s.snr()[-1].item())


def test_inpaint_with_resampling_keeps_the_known_pixels_and_rejects_bad_resample(g):
    s = NoiseSchedule.linear(30)
    net = TinyUNet(UNetConfig(channels=8, num_classes=0))
    x = torch.rand(2, 1, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, :4] = 1
    out = inpaint(net, x, mask, s, 4, resample=3, generator=g)
    assert torch.equal(out[..., :4], x[..., :4]) and out.isfinite().all()
    with pytest.raises(ValueError, match="resample"):
        inpaint(net, x, mask, s, 4, resample=0)
